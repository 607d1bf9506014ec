"""Holdout evaluation: a seeded split of interactions, precision@k and NDCG@k."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender.base import Recommender


@dataclass(frozen=True)
class Split:
    """Train and test matrices of the same shape; every interaction is in exactly one.

    `users` are the rows that lost interactions to the test side: after
    evaluation, only they need to see their whole history again.
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    users: np.ndarray

    @property
    def held_out_share(self) -> float:
        """Test interactions as a share of all interactions."""
        total = self.train.nnz + self.test.nnz
        return self.test.nnz / total if total else 0.0


@dataclass(frozen=True)
class RankingMetrics:
    """Mean top-k ranking quality over users with test interactions; None where there were none (a score of 0
    measured on nobody read as a model that recommends nothing right)."""

    precision_at_10: float | None
    ndcg_at_10: float | None
    recall_at_10: float | None
    users_evaluated: int


def holdout_split(matrix: sp.csr_matrix, test_fraction: float, seed: int, max_users: int | None = None) -> Split:
    """Send each (user, item) interaction to the test side with probability `test_fraction`.

    With `max_users`, only a seeded sample of that many users (among those
    with two or more interactions) gives up test interactions. Evaluation only
    ranks for a sample anyway, and holding out nobody else leaves the model
    fitted on the split almost the model fitted on everything, so training
    need not fit twice.
    """
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    rng = np.random.default_rng(seed)
    coo = matrix.tocoo()
    in_test = rng.random(coo.nnz) < test_fraction
    if max_users is not None:
        eligible = np.flatnonzero(np.diff(matrix.indptr) >= 2)
        if len(eligible) > max_users:
            sampled = np.zeros(matrix.shape[0], dtype=bool)
            sampled[rng.choice(eligible, size=max_users, replace=False)] = True
            in_test &= sampled[coo.row]

    def part(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=matrix.shape)

    return Split(train=part(~in_test), test=part(in_test), users=np.unique(coo.row[in_test]))


def ranking_metrics(recommended: np.ndarray, relevant: list[np.ndarray], k: int = 10) -> RankingMetrics:
    """Precision, NDCG and recall at k with binary relevance, averaged over users."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision, ndcg, recall = [], [], []
    for recs, rel in zip(recommended, relevant):
        recs = recs[:k]
        # An item counts once: a library asked for more items than a small catalogue holds pads
        # its list with repeats, which were counted as more hits than there are relevant items.
        first = np.zeros(len(recs), dtype=bool)
        first[np.unique(recs, return_index=True)[1]] = True
        hits = (np.isin(recs, rel) & first).astype(float)
        precision.append(hits.sum() / k)
        recall.append(hits.sum() / len(rel))
        ideal = discounts[: min(len(rel), k)].sum()
        ndcg.append(float(hits @ discounts[: len(hits)]) / ideal)
    n = len(precision)
    if n == 0:
        return RankingMetrics(None, None, None, 0)
    return RankingMetrics(float(np.mean(precision)), float(np.mean(ndcg)), float(np.mean(recall)), n)


def evaluate(model: Recommender, split: Split, k: int = 10, max_users: int | None = 2000, seed: int = 0) -> RankingMetrics:
    """Rank all items the user did not train on, for a seeded sample of users with test items."""
    users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    recs = model.top_for_users(users, split.train, k)
    relevant = [split.test.indices[split.test.indptr[u] : split.test.indptr[u + 1]] for u in users]
    return ranking_metrics(recs, relevant, k)
