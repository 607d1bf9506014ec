"""Visits cut from the events' times, and EASE weighing the pairs of items one shopper had in one visit."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommender.evaluation import holdout_split
from recommender.matrix import CodedEvents, MatrixSettings, build_matrix
from recommender.models.ease import EASE
from recommender.visits import EventTimes

HOUR = 3600.0


def test_a_pause_longer_than_the_gap_starts_a_new_visit_and_an_item_counts_once_per_visit():
    # user 0: a, b and a again within minutes, then c after two hours; user 1: b then a.
    times = EventTimes(rows=np.array([0, 0, 0, 0, 1, 1]), cols=np.array([0, 1, 0, 2, 1, 0]),
                       ts=np.array([0.0, 600.0, 900.0, 900.0 + 2 * HOUR, 50.0, 10.0]), shape=(2, 3))
    owners = sp.csr_matrix(np.array([[2.0, 1.5, 3.0], [1.0, 4.0, 0.0]], dtype=np.float32))
    visits = times.visits(1800.0, owners)
    assert visits.users.tolist() == [0, 0, 1]
    assert visits.items.toarray().tolist() == [[2.0, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, 4.0, 0.0]]
    assert len(times.visits(3 * HOUR, owners)) == 2  # one visit each when the gap spans the whole history


def test_a_cell_held_out_leaves_the_visits_with_its_time():
    # a at 0, b at 20 minutes, c at 40: one visit; with b held out, a and c are 40 minutes apart, two visits.
    times = EventTimes(rows=np.zeros(3, dtype=np.int64), cols=np.array([0, 1, 2]), ts=np.array([0.0, 1200.0, 2400.0]), shape=(1, 3))
    everything = sp.csr_matrix(np.ones((1, 3), dtype=np.float32))
    assert times.visits(1800.0, everything).items.toarray().tolist() == [[1.0, 1.0, 1.0]]
    without_b = sp.csr_matrix(np.array([[1.0, 0.0, 1.0]], dtype=np.float32))
    assert times.visits(1800.0, without_b).items.toarray().tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert len(times.visits(1800.0, sp.csr_matrix((1, 3), dtype=np.float32))) == 0


def shop(seed: int = 3, users: int = 200, items: int = 30):
    """Purchases in a few visits per user, hours to weeks apart."""
    rng = np.random.default_rng(seed)
    u, i, t = [], [], []
    for user in range(users):
        start = 0.0
        for _ in range(rng.integers(1, 5)):
            start += rng.uniform(2 * HOUR, 30 * 24 * HOUR)
            for item in rng.choice(items, size=rng.integers(1, 6), replace=False):
                u.append(f"u{user}"), i.append(f"i{item}"), t.append(start + rng.uniform(0, 1200))
    events = CodedEvents.from_ids(u, i, ["purchase"] * len(u), t)
    return build_matrix(events, MatrixSettings(), now=t[-1])


def reference(x: sp.csr_matrix, visits: sp.csr_matrix, l2: float, weight: float) -> np.ndarray:
    """B from X^T X + weight * V^T V in float64, V's rows valued from their owners' cells."""
    dense, v = x.toarray().astype(np.float64), visits.toarray().astype(np.float64)
    p = np.linalg.inv(dense.T @ dense + weight * v.T @ v + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_adds_each_visit_as_one_more_shopper_to_the_gram_matrix():
    matrix = shop()
    model = EASE({"l2": 20.0, "session_weight": 0.7, "session_gap_minutes": 30})
    model.visits_of = matrix.visits
    model.fit(matrix.confidence)
    visits = matrix.visits(1800.0, matrix.confidence)
    by_hand = np.zeros((len(visits), matrix.shape[1]))
    for row, (user, items) in enumerate(zip(visits.users, visits.items.tolil().rows)):
        by_hand[row, items] = matrix.confidence[user].toarray()[0, items]
    assert np.allclose(model.to_arrays()["weights"], reference(matrix.confidence, sp.csr_matrix(by_hand), 20.0, 0.7), atol=1e-5)
    assert model.fit_report()["visits_used"] == len(visits) > matrix.shape[0]


def test_without_the_events_times_or_with_no_weight_it_is_plain_ease():
    matrix = shop()
    plain = EASE({"l2": 20.0, "session_weight": 0.0})
    plain.visits_of = matrix.visits
    plain.fit(matrix.confidence)
    bare = EASE({"l2": 20.0})  # nobody told it the visits
    bare.fit(matrix.confidence)
    expected = reference(matrix.confidence, sp.csr_matrix(matrix.shape, dtype=np.float32)[:0], 20.0, 0.0)
    for model in (plain, bare):
        assert np.allclose(model.to_arrays()["weights"], expected, atol=1e-5)
        assert model.fit_report()["visits_used"] == 0


def test_a_fit_on_an_evaluation_split_learns_nothing_from_held_out_items_through_the_visits():
    matrix = shop(users=300)
    split = holdout_split(matrix.confidence, 0.3, seed=5)
    model = EASE({"l2": 20.0, "session_weight": 1.0})
    model.visits_of = matrix.visits
    model.fit(split.train)
    visits = matrix.visits(1800.0, split.train)
    assert np.allclose(model.to_arrays()["weights"], reference(split.train, visits.items, 20.0, 1.0), atol=1e-5)
    held_out = split.test.tocoo()
    assert all(visits.items[np.flatnonzero(visits.users == r), c].nnz == 0 for r, c in zip(held_out.row, held_out.col))
