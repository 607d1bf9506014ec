"""The popularity baseline: the same list for everyone, by number of distinct users."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from recommender.base import Recommender


@dataclass(frozen=True)
class PopularityParams:
    """No settings; kept for a uniform interface."""

    refit_iterations: int = 1


def item_popularity(user_items: sp.csr_matrix) -> np.ndarray:
    """Distinct users per item, as float32."""
    return np.bincount(user_items.indices, minlength=user_items.shape[1]).astype(np.float32)


class Popularity(Recommender):
    """Cold start and the yardstick every personalised model must beat."""

    name = "popularity"
    PERSONAL = False
    params_type = PopularityParams
    _scores: np.ndarray

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, warm_start: bool = False) -> None:
        """Count distinct users per item."""
        self._scores = item_popularity(user_items)

    def score_users(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """The same scores for every user."""
        return np.broadcast_to(self._scores, (len(users), len(self._scores)))

    def top_for_users(self, users: np.ndarray, user_items: sp.csr_matrix, k: int, chunk: int = 256) -> np.ndarray:
        """One ranking for all: each user's k first items of it that are not in their row."""
        lengths = np.diff(user_items.indptr)[users]
        depth = min(user_items.shape[1], k + int(lengths.max(initial=0)))
        ranking = np.argsort(-self._scores, kind="stable")[:depth]
        ranked = np.full((len(users), min(k, user_items.shape[1])), -1, dtype=np.int64)
        for row, u in enumerate(users):
            mine = ranking[~np.isin(ranking, user_items.indices[user_items.indptr[u] : user_items.indptr[u + 1]])][: ranked.shape[1]]
            ranked[row, : len(mine)] = mine
        return ranked

    def score_row(self, row: sp.csr_matrix) -> np.ndarray:
        """The same scores for anyone."""
        return self._scores.copy()

    def similar(self, item: int) -> np.ndarray:
        """Popularity says nothing about similarity; most popular first."""
        return self._scores.copy()

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The popularity vector."""
        return {"popularity": self._scores}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore the popularity vector."""
        self._scores = np.asarray(arrays["popularity"], dtype=np.float32)
