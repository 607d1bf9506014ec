"""The in-memory serving index: one trained model plus the ids and popularity it serves with."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Collection, Sequence

import numpy as np

from recommender import index_artifact
from recommender.ann import SIMILAR_LINKS, AnnSettings, VectorIndex
from recommender.base import Recommender, best_first
from recommender.matrix import MatrixSettings, row_for_events
from recommender.models.factors import FactorModel
from recommender.search_ahead import RANKED_DEPTH, budget_seconds, inner_products, rescored, search_ahead
from recommender.training import TrainedModel

UserEvent = tuple[str, str, float]  # (item_id, event type, epoch seconds)
# A known user's best RANKED_DEPTH items are the same for as long as the version is served,
# so each index remembers them for its most recent users: a repeat request filters a
# short list instead of scoring the whole catalogue; fewer survivors mean a full scoring pass.
RANKED_USERS = 10_000
# An item's most similar items are as fixed as a user's best ones, and product pages follow
# popularity: each index remembers them for its most recently asked items (1.2 kB an entry, so
# 12 MB per worker at most; a user's list takes 2.4 kB). Requests for similar items ask for fewer
# and filter less, and a shorter list keeps an item's first search as cheap as before.
RANKED_ITEMS = 10_000
SIMILAR_DEPTH = 100
# With an index: below this many eligible items (a narrow category, say) scoring them all costs
# less than a graph search whose candidates mostly fail the filter.
EXACT_BELOW = 10_000
# A filtered search widens fourfold while too few candidates pass, up to this many; past it,
# every eligible item is scored, so a request still gets n items while the catalogue has them.
MAX_CANDIDATES = 4_096
Scorer = Callable[[np.ndarray | None], np.ndarray]  # exact scores of the given rows (None: of every item)


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
    # For factor models over big catalogues: candidates by inner product for users, and by
    # cosine (an index over unit-length factors) for similar items. None: score exactly.
    ann: VectorIndex | None = None
    similar_ann: VectorIndex | None = None
    ann_seconds: float = 0.0
    precompute_seconds: float = 0.0
    # With an index: the candidates `ann` gives the users in `ranked_users` (rows of `ranked_rows`,
    # -1 padded), searched at training time; the same rows a request would search for. With
    # `ranked_scores` the rows are ranked already, best first with their exact scores; without
    # (artifacts from before 2026-12-05) they are sorted and scored on a user's first request.
    ranked_users: np.ndarray | None = None
    ranked_rows: np.ndarray | None = None
    ranked_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.item_index = {item: i for i, item in enumerate(self.item_ids)}
        self.user_index = {user: u for u, user in enumerate(self.user_ids)}
        # What the fit could not place (a factor row left at zero, an item beyond EASE's max_items) would
        # score as 0 or as a stand-in and answer an arbitrary or global list under a personal label: such
        # a user is served like a newcomer (from their events, or popular items when none of theirs is
        # placed), and such an item's similar items are the popular ones of its category.
        placed_users = self.model.placed_users()
        if placed_users is not None:
            for u in np.flatnonzero(~placed_users).tolist():
                self.user_index.pop(self.user_ids[u], None)
        self._placed_items = self.model.placed_items()
        self._index_ranked_users()
        self._ranked = lru_cache(maxsize=RANKED_USERS)(self._rank_known_user)
        self._ranked_similar = lru_cache(maxsize=RANKED_ITEMS)(self._rank_similar)
        self._popular_order: np.ndarray | None = None

    def _search_ahead(self, trained: TrainedModel, limit: int, budget_seconds: float) -> None:
        """Search the graph ahead for the most active known users (`recommender.search_ahead`)."""
        assert self.ann is not None
        found = search_ahead(self.ann, self._factors, trained, limit, budget_seconds)
        self.ranked_users, self.ranked_rows, self.ranked_scores = found.users, found.rows, found.scores
        self._index_ranked_users()
        self.precompute_seconds = found.seconds

    def _index_ranked_users(self) -> None:
        users = self.ranked_users if self.ranked_users is not None else ()
        self._ranked_slot = {int(user): slot for slot, user in enumerate(users)}

    def _rank_known_user(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        if self.ann is None:
            return self.model.best_for_user(user, RANKED_DEPTH)
        slot = self._ranked_slot.get(user)
        if slot is not None and self.ranked_rows is not None:
            rows = self.ranked_rows[slot]
            kept = int(np.count_nonzero(rows >= 0))  # the padding is last
            if self.ranked_scores is not None:
                # Ranked at training time: a first request reads 1.6 kB instead of gathering 200 rows of
                # the item factors from all over a catalogue's worth of memory.
                return rows[:kept].astype(np.int64), self.ranked_scores[slot, :kept]
            return rescored(self._factors.item_factors, np.sort(rows[:kept]).astype(np.int64), self._factors.user_vector(user))
        vector = self._factors.user_vector(user)
        return rescored(self._factors.item_factors, np.sort(self.ann.candidates(vector, RANKED_DEPTH)), vector)

    def _rank_similar(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """The SIMILAR_DEPTH items most similar to `item` (never itself), best first, with their exact scores."""
        if self.similar_ann is None:
            scores = self.item_scores(self.item_ids[item])
            assert scores is not None
            order = best_first(scores, None, SIMILAR_DEPTH)
            return order, scores[order]
        model = self._factors
        rows = np.sort(self.similar_ann.candidates(model.item_factors[item] / model.item_norms[item], SIMILAR_DEPTH + 1))
        rows = rows[rows != item]
        scores = np.asarray(model.similar_to(item, rows), dtype=np.float32)
        order = best_first(scores, None, len(rows))
        return rows[order], scores[order]

    @property
    def _factors(self) -> FactorModel:
        """The model as a factor model: only those get an index."""
        assert isinstance(self.model, FactorModel)
        return self.model

    def top_for_known_user(self, user_id: str, allowed: np.ndarray, blocked: Collection[str], n: int) -> list[tuple[str, float]] | None:
        """The same answer as scoring everything, from the user's remembered best items.

        `allowed` masks the items (it is only read); `blocked` names items never
        to show. Exact: if n of the user's best RANKED_DEPTH items pass, no item
        outside them can rank above those n. None when the model does not know
        the user, or too few remembered items pass.
        """
        user = self.user_index.get(user_id)
        if user is None or not self.model.PERSONAL or self.model.needs_training_matrix:
            return None
        order, scores = self._ranked(user)
        picked = self._first_allowed(order, scores, allowed, blocked, n)
        return picked if len(picked) == n or len(order) == self.n_items else None

    def _first_allowed(self, order: np.ndarray, scores: np.ndarray, allowed: np.ndarray, blocked: Collection[str], n: int) -> list[tuple[str, float]]:
        """The first n items of a ranked list that `allowed` lets through and `blocked` does not name."""
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
        return picked

    def top_for_user(self, user_id: str, events: Sequence[UserEvent], now: float, allowed: np.ndarray, n: int) -> tuple[str, list[tuple[str, float]]]:
        """("personalized" or "popular", the n best allowed items) for a user and their stored events.

        `allowed` must already exclude what the user may not see; with an index, only the
        candidates it proposes are scored, and the filter still applies to every one.
        """
        if self.ann is None:
            strategy, scores = self.user_scores(user_id, events, now)
            items = self.top_popular(allowed, n) if strategy == "popular" else self.top(scores, allowed, n)
            return strategy, items
        model = self._factors
        known = self.user_index.get(user_id)
        if known is not None:
            vector = model.user_vector(known)
        else:
            row = row_for_events(self.settings, self.item_index, self.n_items, events, now)
            if not self._placed(row.indices):
                return "popular", self.top_popular(allowed, n)
            vector = model.fold_in(row)
        factors = model.item_factors
        return "personalized", self._search(self.ann, vector, lambda rows: inner_products(factors, rows, vector), allowed, n)

    def top_similar(self, item_id: str, allowed: np.ndarray, n: int, groups: np.ndarray | None = None) -> list[tuple[str, float]] | None:
        """The n allowed items most similar to `item_id` (never itself); None when the model does not know it.

        `allowed` is only read. From the item's remembered most similar items when n of them pass,
        else a search of its own. Without the index that is exact, as for known users; with it, the
        list comes from one graph search, as a known user's does, so every worker answers alike.
        `groups` numbers each item's group (a category; below 0, none): when an item-item model links
        too few items to fill the list, the unlinked ones that fill it come from the item's own group
        first, so that a garden glove's list is not topped up with best-selling books.
        """
        item = self.item_index.get(item_id)
        if item is None or not self.model.PERSONAL or not self._placed(np.array([item])):
            return None
        order, scores = self._ranked_similar(item)
        picked = self._first_allowed(order, scores, allowed, (), n)
        linked = not self.model.ZERO_IS_UNLINKED or (len(picked) == n and picked[-1][1] > 0)
        # Without the index, a list shorter than asked for holds every item with a finite score.
        if linked and (len(picked) == n or (self.similar_ann is None and len(order) < SIMILAR_DEPTH)):
            return picked
        allowed = allowed.copy()
        allowed[item] = False
        if self.similar_ann is None:
            everything = self.item_scores(item_id)
            assert everything is not None
            kin = groups == groups[item] if groups is not None and groups[item] >= 0 else None
            return self.top(everything, allowed, n, kin)
        model = self._factors
        query = model.item_factors[item] / model.item_norms[item]
        return self._search(self.similar_ann, query, lambda rows: model.similar_to(item, rows), allowed, n)

    def _search(self, index: VectorIndex, query: np.ndarray, score: Scorer, allowed: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The n best allowed items among the index's candidates, exactly re-scored; every allowed item when too few pass."""
        eligible = int(np.count_nonzero(allowed))
        if eligible > EXACT_BELOW:
            # Ask for enough candidates that n survive a filter passing eligible / n_items of them.
            k = min(MAX_CANDIDATES, int(1.5 * n * self.n_items / eligible) + 16)
            while True:
                rows = index.candidates(query, k)
                rows = np.sort(rows[allowed[rows]])
                if len(rows) >= n:
                    scores = np.asarray(score(rows), dtype=np.float32)
                    keep = best_first(scores, None, n)
                    return [(self.item_ids[rows[i]], float(scores[i])) for i in keep]
                if k >= MAX_CANDIDATES:
                    break
                k = min(MAX_CANDIDATES, 4 * k)
            return self.top(np.asarray(score(None), dtype=np.float32), allowed, n)
        rows = np.flatnonzero(allowed)
        scores = np.asarray(score(rows), dtype=np.float32)
        return [(self.item_ids[rows[i]], float(scores[i])) for i in best_first(scores, None, n)]

    def top_popular(self, allowed: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The n most popular allowed items (ties: the earlier item), walking a ranking made once."""
        if self._popular_order is None:
            self._popular_order = np.argsort(-self.popularity, kind="stable")
        order = self._popular_order
        picked: list[int] = []
        start, step = 0, 4 * n + 64
        while len(picked) < n and start < len(order):
            chunk = order[start : start + step]
            picked.extend(chunk[allowed[chunk]][: n - len(picked)].tolist())
            start, step = start + step, step * 4
        return [(self.item_ids[i], float(self.popularity[i])) for i in picked]

    @property
    def n_items(self) -> int:
        """Items the model can score."""
        return len(self.item_ids)

    def needs_events(self, user_id: str) -> bool:
        """Whether scoring this user reads their events (a fold-in or an item-item model), not only learned state."""
        if not self.model.PERSONAL:
            return False
        return user_id not in self.user_index or self.model.needs_training_matrix

    def user_scores(self, user_id: str, events: Sequence[UserEvent], now: float) -> tuple[str, np.ndarray]:
        """("personalized" or "popular", scores over items) for a user and their stored events."""
        if not self.model.PERSONAL:
            return "popular", self.popularity
        known = self.user_index.get(user_id)
        if known is not None and not self.model.needs_training_matrix:
            return "personalized", np.asarray(self.model.score_users(np.array([known]), None)[0])  # type: ignore[arg-type]
        row = row_for_events(self.settings, self.item_index, self.n_items, events, now)
        if self._placed(row.indices):
            return "personalized", self._linked(np.asarray(self.model.score_row(row), dtype=np.float32))
        return "popular", self.popularity

    def _linked(self, scores: np.ndarray) -> np.ndarray:
        """Scores with an item-item model's zeros (no link at all) made unscored, -inf; `scores` is changed."""
        if self.model.ZERO_IS_UNLINKED:
            scores[scores == 0] = -np.inf
        return scores

    def _placed(self, items: np.ndarray) -> bool:
        """Whether any of these items is one the fit learned about (none: nothing to personalise from)."""
        return bool(len(items)) and (self._placed_items is None or bool(self._placed_items[items].any()))

    def item_scores(self, item_id: str) -> np.ndarray | None:
        """Similarity of every item to `item_id`, or None when the model does not know it."""
        item = self.item_index.get(item_id)
        if item is None or not self.model.PERSONAL:
            return None
        scores = self._linked(np.asarray(self.model.similar(item), dtype=np.float32).copy())
        scores[item] = -np.inf
        return scores

    def top(self, scores: np.ndarray, allowed: np.ndarray, n: int, kin: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The n best allowed items, best first; ties go to the earlier item. `kin`: see `_linked_first`."""
        order = best_first(scores, allowed, n)
        if self.model.ZERO_IS_UNLINKED:
            return self._linked_first(scores, allowed, n, order, kin)
        return [(self.item_ids[i], float(scores[i])) for i in order]

    def _linked_first(
        self, scores: np.ndarray, allowed: np.ndarray, n: int, order: np.ndarray, kin: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """An item-item model's list: the items it links positively, best first; then those it links to nothing
        (unscored: beyond EASE's max_items, or with no link to what the user has), the most popular first, as
        the model predicts them 0 (those `kin` marks before the others); then the negatively linked ones. So n
        items come back while the catalogue has them, and never ties at 0 in catalogue order. The unlinked ones
        are scored evenly between 0 and the first negative score (or 1 apart), so that the list still reads best first."""
        positive = order[scores[order] > 0]
        if len(positive) == n:
            return [(self.item_ids[i], float(scores[i])) for i in positive]
        unlinked = allowed & ~np.isfinite(scores)
        fill = self.top_popular(unlinked & kin, n - len(positive)) if kin is not None else []
        fill += self.top_popular(unlinked & ~kin if kin is not None else unlinked, n - len(positive) - len(fill))
        negative = order[scores[order] < 0][: n - len(positive) - len(fill)]
        step = (-float(scores[negative[0]]) if len(negative) else 1.0) / (len(fill) + 1)
        return (
            [(self.item_ids[i], float(scores[i])) for i in positive]
            + [(item, -k * step) for k, (item, _) in enumerate(fill, start=1)]
            + [(self.item_ids[i], float(scores[i])) for i in negative]
        )

    def to_bytes(self, extra_meta: dict[str, Any] | None = None) -> bytes:
        """An .npz artifact with no pickled objects (`recommender.index_artifact`)."""
        return index_artifact.encode(self, extra_meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> "ServingIndex":
        """Load an artifact written by to_bytes."""
        return cls(**index_artifact.decode(data))

    @classmethod
    def from_trained(cls, version: str, trained: TrainedModel, settings: MatrixSettings, ann: AnnSettings | None = None) -> "ServingIndex":
        """Wrap a freshly trained model, indexing its items when it is a factor model over at least `ann.min_items` of them."""
        index = cls(
            version=version,
            algorithm=trained.model.name,
            model=trained.model,
            settings=settings,
            item_ids=trained.matrix.item_ids,
            user_ids=trained.matrix.user_ids,
            popularity=trained.popularity,
        )
        if ann is not None and isinstance(trained.model, FactorModel) and ann.applies_to(index.n_items):
            started = time.perf_counter()
            factors = trained.model.item_factors
            index.ann = VectorIndex.build(factors, ann)
            index.similar_ann = VectorIndex.build(factors / trained.model.item_norms[:, None], ann, compact=True, links=SIMILAR_LINKS)
            index._search_ahead(trained, ann.precomputed_users, budget_seconds(trained))
            index.ann_seconds = time.perf_counter() - started
        return index

    def ann_report(self) -> dict[str, Any] | None:
        """What the version's `data` says of its index: None when it scores exactly."""
        if self.ann is None:
            return None
        users = 0 if self.ranked_users is None else len(self.ranked_users)
        return {**self.ann.describe(), "build_seconds": round(self.ann_seconds, 3), "precomputed_users": users, "precompute_seconds": round(self.precompute_seconds, 3)}

