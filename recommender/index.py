"""The in-memory serving index: one trained model plus the ids and popularity it serves with."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Collection, Sequence

import numpy as np

from recommender.artifacts import dumps, loads, pack_strings, unpack_strings
from recommender.base import Recommender, best_first
from recommender.matrix import MatrixSettings, row_for_events
from recommender.models import make_recommender
from recommender.training import TrainedModel

UserEvent = tuple[str, str, float]  # (item_id, event type, epoch seconds)
# A known user's best items are the same for as long as the version is served, so
# each index remembers them for its most recent users: a repeat request filters a
# short list instead of scoring the whole catalogue. 200 covers the largest n
# (100) after filters in most requests; fewer survivors mean a full scoring pass.
RANKED_DEPTH = 200
RANKED_USERS = 10_000


@dataclass
class ServingIndex:
    """Answers top-n questions for one model version."""

    version: str
    algorithm: str
    model: Recommender
    settings: MatrixSettings
    item_ids: list[str]
    user_ids: list[str]
    popularity: np.ndarray

    def __post_init__(self) -> None:
        self.item_index = {item: i for i, item in enumerate(self.item_ids)}
        self.user_index = {user: u for u, user in enumerate(self.user_ids)}
        self._ranked = lru_cache(maxsize=RANKED_USERS)(self._rank_known_user)

    def _rank_known_user(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.best_for_user(user, RANKED_DEPTH)

    def top_for_known_user(self, user_id: str, allowed: np.ndarray, blocked: Collection[str], n: int) -> list[tuple[str, float]] | None:
        """The same answer as scoring everything, from the user's remembered best items.

        `allowed` masks the items (it is only read); `blocked` names items never
        to show. Exact: if n of the user's best RANKED_DEPTH items pass, no item
        outside them can rank above those n. None when the model does not know
        the user, or too few remembered items pass.
        """
        user = self.user_index.get(user_id)
        if user is None or self.algorithm == "popularity" or self.model.needs_training_matrix:
            return None
        order, scores = self._ranked(user)
        item_ids = self.item_ids
        picked: list[tuple[str, float]] = []
        # A plain loop that stops at n: a handful of steps, where whole-array masks cost
        # more. Most requests stop early, so only a short head is converted first.
        head = 2 * n + len(blocked) + 8
        for start, stop in ((0, head), (head, len(order))):
            for i, score in zip(order[start:stop].tolist(), scores[start:stop].tolist()):
                if allowed[i] and item_ids[i] not in blocked:
                    picked.append((item_ids[i], score))
                    if len(picked) == n:
                        return picked
        return picked if len(order) == self.n_items else None

    @property
    def n_items(self) -> int:
        """Items the model can score."""
        return len(self.item_ids)

    def needs_events(self, user_id: str) -> bool:
        """Whether scoring this user reads their events (a fold-in or an item-item model), not only learned state."""
        if self.algorithm == "popularity":
            return False
        return user_id not in self.user_index or self.model.needs_training_matrix

    def user_scores(self, user_id: str, events: Sequence[UserEvent], now: float) -> tuple[str, np.ndarray]:
        """("personalized" or "popular", scores over items) for a user and their stored events."""
        if self.algorithm == "popularity":
            return "popular", self.popularity
        known = self.user_index.get(user_id)
        if known is not None and not self.model.needs_training_matrix:
            return "personalized", np.asarray(self.model.score_users(np.array([known]), None)[0])  # type: ignore[arg-type]
        row = row_for_events(self.settings, self.item_index, self.n_items, events, now)
        if row.nnz:
            return "personalized", np.asarray(self.model.score_row(row), dtype=np.float32)
        return "popular", self.popularity

    def item_scores(self, item_id: str) -> np.ndarray | None:
        """Similarity of every item to `item_id`, or None when the model does not know it."""
        item = self.item_index.get(item_id)
        if item is None or self.algorithm == "popularity":
            return None
        scores = np.asarray(self.model.similar(item), dtype=np.float32).copy()
        scores[item] = -np.inf
        return scores

    def top(self, scores: np.ndarray, allowed: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The n best allowed items, best first; ties go to the earlier item."""
        return [(self.item_ids[i], float(scores[i])) for i in best_first(scores, allowed, n)]

    def to_bytes(self, extra_meta: dict[str, Any] | None = None) -> bytes:
        """An .npz artifact with no pickled objects."""
        arrays = {f"model_{k}": v for k, v in self.model.to_arrays().items()}
        arrays["item_ids"], arrays["item_offsets"] = pack_strings(self.item_ids)
        arrays["user_ids"], arrays["user_offsets"] = pack_strings(self.user_ids)
        arrays["popularity"] = self.popularity
        meta = {
            "version": self.version,
            "algorithm": self.algorithm,
            "params": self.model.describe_params(),
            "settings": {**asdict(self.settings), "weights": dict(self.settings.weights)},
            **(extra_meta or {}),
        }
        return dumps(arrays, meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> "ServingIndex":
        """Load an artifact written by to_bytes."""
        arrays, meta = loads(data)
        model = make_recommender(meta["algorithm"], meta["params"])
        model.load_arrays({k[len("model_") :]: v for k, v in arrays.items() if k.startswith("model_")})
        return cls(
            version=meta["version"],
            algorithm=meta["algorithm"],
            model=model,
            settings=MatrixSettings(**meta["settings"]),
            item_ids=unpack_strings(arrays["item_ids"], arrays["item_offsets"]),
            user_ids=unpack_strings(arrays["user_ids"], arrays["user_offsets"]),
            popularity=arrays["popularity"],
        )

    @classmethod
    def from_trained(cls, version: str, trained: TrainedModel, settings: MatrixSettings) -> "ServingIndex":
        """Wrap a freshly trained model."""
        return cls(
            version=version,
            algorithm=trained.model.name,
            model=trained.model,
            settings=settings,
            item_ids=trained.matrix.item_ids,
            user_ids=trained.matrix.user_ids,
            popularity=trained.popularity,
        )
