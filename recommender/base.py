"""The contract every recommendation model follows."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, fields
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import scipy.sparse as sp

from recommender.search_space import Dimension
from recommender.settings import checked
from recommender.visits import Visits


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores of each row, best first (ties within them: lower index first).

    For offline evaluation, where which of several items tied at the cut is taken does not
    matter; serving ranks with `best_first`, which decides those ties too.
    """
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def best_first(scores: np.ndarray, allowed: np.ndarray | None, k: int) -> np.ndarray:
    """Indices of the k best allowed finite scores of one row, best first; ties go to the earlier item."""
    masked = scores if allowed is None else np.where(allowed, scores, -np.inf).astype(np.float32, copy=False)
    k = min(int(k), int(np.count_nonzero(np.isfinite(masked))))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.argpartition(-masked, k - 1)[:k]
    # The partition takes any of the items tied with the k-th score; the earliest ones belong.
    # Every worker must answer alike, whether from a remembered list or from every score.
    threshold = masked[candidates].min()
    tied = np.flatnonzero(masked == threshold)
    if len(tied) > np.count_nonzero(masked[candidates] == threshold):
        above = candidates[masked[candidates] > threshold]
        candidates = np.concatenate([above, tied[: k - len(above)]])
    return candidates[np.lexsort((candidates, -masked[candidates]))]


def _as_served(scores: np.ndarray, unlinked: np.ndarray) -> np.ndarray:
    """Scores (users x items) reordered into bands, in float64 so that no order within a band is lost:
    positive scores above 2, the unlinked (0 or unscored) at their popularity share in [0, 1), negative ones below -1."""
    s = scores.astype(np.float64)
    linked = np.isfinite(s) & (s != 0)
    return np.where(linked & (s > 0), s + 2.0, np.where(linked, s - 1.0, unlinked[np.newaxis, :]))


class FitStopped(Exception):
    """A fit ended early because whoever ran it asked (`Recommender.should_stop`)."""


class CannotTrain(ValueError):
    """The data or the settings cannot give a model: the message, written for the person who asked, says why and what to change."""


class Recommender(ABC):
    """A model that scores items for users and for other items.

    Scores are comparable within one call only. Known users are rows of the
    training matrix; anyone else is scored from a row of their interactions.
    """

    name: ClassVar[str]
    params_type: ClassVar[type]
    # Where tuning searches by default, parameter by parameter; a request may override any range.
    SEARCH_SPACE: ClassVar[Mapping[str, Dimension]] = {}
    # Whether `refit_iterations` (warm-started passes over all the data after evaluation) means anything;
    # the other models keep the field only so that every params type reads alike.
    REFITS: ClassVar[bool] = False
    # Item-item models score an item from its links to the items someone has: a score of exactly 0
    # is no link at all, so such items are unscored rather than tied (their order would be the
    # catalogue's, answered under a personal or "similar" label).
    ZERO_IS_UNLINKED: ClassVar[bool] = False
    # Whether the model ranks for a user or an item at all: one that does not (popularity) answers
    # every list with its popular items, labelled so.
    PERSONAL: ClassVar[bool] = True
    # Set by whoever runs a fit that may be cancelled; models that iterate ask it between iterations
    # and raise FitStopped. It should answer fast (a caller that reads a database throttles itself).
    should_stop: Callable[[], bool] | None = None
    # Set by whoever fits the model on a matrix built from events: the visits for a gap in seconds within the
    # cells being fitted (None without the events' times). Models that learn from visits (EASE) read it in
    # `fit`; the others never do.
    visits_of: Callable[[float, sp.csr_matrix], Visits | None] | None = None

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        try:
            self.params: Any = checked(self.params_type, params or {}, offered=self.settings())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    @classmethod
    def settings(cls) -> list[str]:
        """The parameters a request may set: every field, less `refit_iterations` where it means nothing."""
        return [f.name for f in fields(cls.params_type) if cls.REFITS or f.name != "refit_iterations"]

    def describe_params(self) -> dict[str, Any]:
        """The validated parameters as plain values."""
        return asdict(self.params)

    @abstractmethod
    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, warm_start: bool = False) -> None:
        """Learn from a users x items confidence matrix; warm_start continues from the current state."""

    def fit_report(self) -> dict[str, Any]:
        """Facts about the last fit worth recording with the version (none by default)."""
        return {}

    def absorb(self, user_items: sp.csr_matrix, users: np.ndarray, held_out_share: float) -> None:
        """Catch up with interactions that were held out for evaluation.

        `users` are the rows that lost interactions, `held_out_share` their
        share of `user_items`. By default the model continues fitting on
        everything from where the evaluation fit stopped.
        """
        self.fit(user_items, warm_start=True)

    @abstractmethod
    def score_users(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Scores over all items for known users (rows of the training matrix)."""

    def top_for_users(self, users: np.ndarray, user_items: sp.csr_matrix, k: int, chunk: int = 256) -> np.ndarray:
        """Each known user's k best items, best first, leaving out the items of their row in `user_items`.

        Scores a chunk of users at a time so that users x items floats never
        sit in memory at once; models with a faster way override this.
        """
        k = min(k, user_items.shape[1])
        ranked = []
        # Serving's order for an item-item model, as one score: what it links positively, then what it
        # links to nothing by popularity (distinct users, as served), then what it links negatively.
        unlinked = None
        if self.ZERO_IS_UNLINKED:
            users_per_item = np.bincount(user_items.indices, minlength=user_items.shape[1])
            unlinked = users_per_item / (users_per_item.max(initial=0) + 1.0)
        for start in range(0, len(users), chunk):
            batch = users[start : start + chunk]
            scores = np.array(self.score_users(batch, user_items), dtype=np.float32, copy=True)
            if unlinked is not None:
                scores = _as_served(scores, unlinked)
            seen = user_items[batch]
            scores[np.repeat(np.arange(len(batch)), np.diff(seen.indptr)), seen.indices] = -np.inf
            ranked.append(top_k(scores, k))
        return np.concatenate(ranked) if ranked else np.zeros((0, k), dtype=np.int64)

    def best_for_user(self, user: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A known user's k best items over the whole catalogue and their scores, best first."""
        scores = np.asarray(self.score_users(np.array([user]), None)[0])  # type: ignore[arg-type]
        order = best_first(scores, None, k)
        return order, scores[order]

    @abstractmethod
    def score_row(self, row: sp.csr_matrix) -> np.ndarray:
        """Scores over all items for someone described only by a row of interactions (fold-in)."""

    @abstractmethod
    def similar(self, item: int) -> np.ndarray:
        """Similarity of every item to `item`."""

    @abstractmethod
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The learned state as plain arrays."""

    @abstractmethod
    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore the learned state saved by to_arrays."""

    @property
    def needs_training_matrix(self) -> bool:
        """Whether serving known users needs their training rows (item-item models do)."""
        return False

    def placed_items(self) -> np.ndarray | None:
        """Which items the fit learned anything about, as a mask; None when every item."""
        return None

    def placed_users(self) -> np.ndarray | None:
        """Which known users the fit learned anything about, as a mask; None when every one."""
        return None
