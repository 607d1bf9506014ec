"""Candidates searched ahead, at training time, for a big catalogue's most active users.

A known user's first request on a worker searched the graph for RANKED_DEPTH candidates: over
1 ms of a worker's CPU with four workers sharing two cores, since each search walks megabytes of
a graph no cache holds. Training searches for the most active users instead, in batches, ranks
each user's candidates by their exact scores, and the artifact stores them: such a user's first
request reads a short list. Searched ahead or on request, a user gets the same rows and scores.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from recommender.ann import VectorIndex
from recommender.base import best_first
from recommender.models.factors import FactorModel
from recommender.training import TrainedModel

# A known user's best items: 200 covers the largest n (100) after filters in most requests.
RANKED_DEPTH = 200
# Searching ahead may add at most this share of the fit's seconds to training (plus one batch):
# the index must keep training within 1.5 times a bare fit.
PRECOMPUTE_SHARE = 0.1
PRECOMPUTE_BATCH = 4_096


@dataclass(frozen=True)
class SearchedAhead:
    """The users searched ahead (rows of the training matrix), their candidates best first (-1 padded) and exact scores (NaN padded)."""

    users: np.ndarray
    rows: np.ndarray
    scores: np.ndarray
    seconds: float


def search_ahead(ann: VectorIndex, model: FactorModel, trained: TrainedModel, limit: int, budget_seconds: float) -> SearchedAhead:
    """Search the graph for up to `limit` of the most active users, in batches, while the budget lasts (one batch at least)."""
    started = time.perf_counter()
    users = most_active(trained.matrix.confidence.indptr, limit)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(users), PRECOMPUTE_BATCH):
        if found and time.perf_counter() - started > budget_seconds:
            break
        vectors = np.stack([model.user_vector(int(user)) for user in users[start : start + PRECOMPUTE_BATCH]])
        found.append(_ranked_batch(model.item_factors, ann.candidates_many(vectors, RANKED_DEPTH), vectors))
    rows = np.concatenate([r for r, _ in found]) if found else np.zeros((0, RANKED_DEPTH), dtype=np.int32)
    scores = np.concatenate([s for _, s in found]) if found else np.zeros((0, RANKED_DEPTH), dtype=np.float32)
    return SearchedAhead(users[: len(rows)], rows, scores, time.perf_counter() - started)


def budget_seconds(trained: TrainedModel) -> float:
    """How long searching ahead may take: a share of the fit's own seconds."""
    timings = trained.timings
    fit = timings.get("fit_seconds", timings.get("fit_split_seconds", 0.0) + timings.get("absorb_seconds", 0.0))
    return PRECOMPUTE_SHARE * fit


def rescored(item_factors: np.ndarray, rows: np.ndarray, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted candidate rows ranked best first by their exact scores, with those scores.

    The same arithmetic whether a user is searched on request or at training time (`inner_products`).
    """
    scores = inner_products(item_factors, rows, vector)
    order = best_first(scores, None, len(rows))
    return rows[order], scores[order]


def _ranked_batch(item_factors: np.ndarray, candidates: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`rescored` for each row of `candidates_many`'s answer: rows best first and their scores, padded with -1 and NaN."""
    rows = np.full(candidates.shape, -1, dtype=np.int32)
    scores = np.full(candidates.shape, np.nan, dtype=np.float32)
    for i, vector in enumerate(vectors):
        found = candidates[i]
        ranked, ranked_scores = rescored(item_factors, found[found >= 0].astype(np.int64), vector)
        rows[i, : len(ranked)], scores[i, : len(ranked)] = ranked, ranked_scores
    return rows, scores


def inner_products(factors: np.ndarray, rows: np.ndarray | None, vector: np.ndarray) -> np.ndarray:
    """The inner products of some rows of `factors` (None: all of them) with `vector`, the same bits wherever computed.

    einsum, not BLAS, whose sums may depend on how many threads a process lets it use (a request
    thread and a training process differ): a candidate's score must not depend on the path that
    computed it, a list ranked at training time, a search on request or a pass over every item.
    The same numpy build is assumed: hosts that mix builds may differ in the last bit.
    """
    return np.einsum("ij,j->i", factors if rows is None else factors[rows], vector)


def most_active(indptr: np.ndarray, limit: int) -> np.ndarray:
    """Up to `limit` users with any interaction, the most interactions first (ties: the earlier user)."""
    counts = np.diff(indptr)
    order = np.argsort(-counts, kind="stable")[:limit]
    return order[counts[order] > 0].astype(np.int32)
