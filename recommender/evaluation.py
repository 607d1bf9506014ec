"""Holdout evaluation: a seeded split of interactions, precision@k and NDCG@k."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender.base import Recommender


@dataclass(frozen=True)
class Split:
    """Train and test matrices of the same shape; every interaction is in exactly one."""

    train: sp.csr_matrix
    test: sp.csr_matrix


@dataclass(frozen=True)
class RankingMetrics:
    """Mean top-k ranking quality over users with test interactions."""

    precision_at_10: float
    ndcg_at_10: float
    recall_at_10: float
    users_evaluated: int


def holdout_split(matrix: sp.csr_matrix, test_fraction: float, seed: int) -> Split:
    """Send each (user, item) interaction to the test side with probability `test_fraction`."""
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    coo = matrix.tocoo()
    in_test = np.random.default_rng(seed).random(coo.nnz) < test_fraction

    def part(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=matrix.shape)

    return Split(train=part(~in_test), test=part(in_test))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores of each row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def ranking_metrics(recommended: np.ndarray, relevant: list[np.ndarray], k: int = 10) -> RankingMetrics:
    """Precision, NDCG and recall at k with binary relevance, averaged over users."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision, ndcg, recall = [], [], []
    for recs, rel in zip(recommended, relevant):
        hits = np.isin(recs[:k], rel).astype(float)
        precision.append(hits.sum() / k)
        recall.append(hits.sum() / len(rel))
        ideal = discounts[: min(len(rel), k)].sum()
        ndcg.append(float(hits @ discounts[: len(hits)]) / ideal)
    n = len(precision)
    if n == 0:
        return RankingMetrics(0.0, 0.0, 0.0, 0)
    return RankingMetrics(float(np.mean(precision)), float(np.mean(ndcg)), float(np.mean(recall)), n)


def evaluate(model: Recommender, split: Split, k: int = 10, max_users: int | None = 2000, seed: int = 0, chunk: int = 256) -> RankingMetrics:
    """Rank all items the user did not train on, for a seeded sample of users with test items."""
    users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    recommended = []
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        scores = np.array(model.score_users(batch, split.train), dtype=np.float32, copy=True)
        seen = split.train[batch]
        scores[np.repeat(np.arange(len(batch)), np.diff(seen.indptr)), seen.indices] = -np.inf
        recommended.append(top_k(scores, k))
    recs = np.concatenate(recommended) if recommended else np.zeros((0, k), dtype=np.int64)
    relevant = [split.test.indices[split.test.indptr[u] : split.test.indptr[u + 1]] for u in users]
    return ranking_metrics(recs, relevant, k)
