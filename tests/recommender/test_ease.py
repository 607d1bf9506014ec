"""EASE against its closed form, and what it does when the catalogue outgrows `max_items`."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.models import ease
from recommender.models.ease import EASE


def random_matrix(users: int = 300, items: int = 50, seed: int = 1) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    m = sp.random(users, items, density=0.1, format="csr", random_state=seed, dtype=np.float32)
    m.data[:] = 1.0 + rng.random(m.nnz).astype(np.float32)
    return m


def test_weights_match_stecks_closed_form_in_float64():
    x = random_matrix()
    model = EASE({"l2": 5.0})
    model.fit(x)
    dense = x.toarray().astype(np.float64)
    p = np.linalg.inv(dense.T @ dense + 5.0 * np.eye(x.shape[1]))
    expected = np.eye(x.shape[1]) - p / np.diag(p)
    assert np.allclose(model.to_arrays()["weights"], expected, atol=1e-5)
    assert np.count_nonzero(np.diag(model.to_arrays()["weights"])) == 0
    assert np.allclose(model.score_users(np.arange(10), x), dense[:10] @ expected, atol=1e-4)
    assert model.fit_report() == {"items_used": 50, "items_dropped": 0, "interactions_dropped": 0, "visits_used": 0}


def edlae_reference(x: sp.csr_matrix, l2: float, dropout: float) -> np.ndarray:
    """Steck's (2020) full-rank EDLAE in float64 from the raw matrix: L = l2 I + p / (1 - p) diag(X^T X)."""
    dense = x.toarray().astype(np.float64)
    g = dense.T @ dense
    penalty = l2 * np.eye(x.shape[1]) + dropout / (1 - dropout) * np.diag(np.diag(g))
    p = np.linalg.inv(g + penalty)
    b = np.eye(x.shape[1]) - p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


@pytest.mark.parametrize("l2, dropout", [(5.0, 0.1), (5.0, 0.5), (0.5, 0.9), (50.0, 0.25)])
def test_dropout_weights_match_the_emphasized_denoising_closed_form(l2, dropout):
    x = random_matrix()
    model = EASE({"l2": l2, "dropout": dropout})
    model.fit(x)
    expected = edlae_reference(x, l2, dropout)
    assert np.allclose(model.to_arrays()["weights"], expected, rtol=1e-4, atol=1e-6)
    assert np.count_nonzero(np.diag(model.to_arrays()["weights"])) == 0
    assert np.allclose(model.score_users(np.arange(10), x), x[:10].toarray() @ expected, rtol=1e-4, atol=1e-5)


def test_dropout_zero_is_plain_ease_and_dropout_changes_b():
    x = random_matrix()
    plain, zero, some = EASE({"l2": 5.0}), EASE({"l2": 5.0, "dropout": 0.0}), EASE({"l2": 5.0, "dropout": 0.3})
    for model in (plain, zero, some):
        model.fit(x)
    assert EASE().params.dropout == 0.0
    assert np.array_equal(plain.to_arrays()["weights"], zero.to_arrays()["weights"])
    assert np.allclose(zero.to_arrays()["weights"], edlae_reference(x, 5.0, 0.0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(some.to_arrays()["weights"], zero.to_arrays()["weights"], atol=1e-3)


def test_the_gram_matrix_is_the_same_in_blocks(monkeypatch):
    x = random_matrix(users=500)
    monkeypatch.setattr(ease, "GRAM_NNZ_PER_BLOCK", 37)
    assert np.allclose(ease.gram(x), (x.T @ x).toarray(), atol=1e-4)


def test_beyond_max_items_only_the_most_interacted_are_kept_and_never_the_others():
    x = random_matrix()
    counts = np.bincount(x.indices, minlength=x.shape[1])
    model = EASE({"l2": 5.0, "max_items": 20, "min_coverage": 0.1})
    model.fit(x)
    report = model.fit_report()
    kept = np.sort(np.argsort(-counts, kind="stable")[:20])
    assert report["items_used"] == 20 and report["items_dropped"] == 30
    assert report["interactions_dropped"] == int(counts.sum() - counts[kept].sum())
    scores = model.score_row(x[4])
    dropped = np.setdiff1d(np.arange(x.shape[1]), kept)
    assert np.isneginf(scores[dropped]).all() and np.isfinite(scores[kept]).all()


def test_a_row_with_only_dropped_items_falls_back_to_popularity_among_the_kept():
    x = random_matrix()
    model = EASE({"l2": 5.0, "max_items": 20, "min_coverage": 0.1})
    model.fit(x)
    dropped = int(np.flatnonzero(np.isneginf(model.score_row(x[0])))[0])
    row = sp.csr_matrix(([1.0], ([0], [dropped])), shape=(1, x.shape[1]), dtype=np.float32)
    scores = model.score_row(row)
    counts = np.bincount(x.indices, minlength=x.shape[1])
    assert np.array_equal(scores[model.to_arrays()["kept"]], counts[model.to_arrays()["kept"]].astype(np.float32))


def test_a_catalogue_that_max_items_covers_too_little_of_is_refused_with_the_remedy():
    with pytest.raises(ValueError, match="raise max_items"):
        EASE({"l2": 5.0, "max_items": 5, "min_coverage": 0.5}).fit(random_matrix())


@pytest.mark.parametrize("confidence", [1e24, 1e30])
def test_confidences_that_overflow_single_precision_fail_the_fit_instead_of_scoring_nan(confidence):
    x = sp.random(300, 120, density=0.05, random_state=0, format="csr")
    x.data[:] = confidence  # squared, past float32's 3.4e38: a Gram matrix of inf, an inverse of NaN or a singular one
    with pytest.raises(ValueError, match="no finite solution"):
        EASE({}).fit(x)


@pytest.mark.parametrize(
    "params, bound",
    [
        ({"l2": 0}, "l2"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": 0.995}, "dropout"),
        ({"dropout": float("nan")}, "dropout"),
        ({"max_items": 0}, "max_items"),
        ({"max_items": 10**6}, "max_items"),
        ({"min_coverage": 2}, "min_coverage"),
        ({"session_weight": -0.5}, "session_weight"),
        ({"session_weight": 1e4}, "session_weight"),
        ({"session_weight": float("nan")}, "session_weight"),
        ({"session_gap_minutes": 0}, "session_gap_minutes"),
        ({"session_gap_minutes": 1e9}, "session_gap_minutes"),
    ],
)
def test_settings_name_the_bound_they_break(params, bound):
    with pytest.raises(ValueError, match=bound):
        EASE(params)


def test_catching_up_refits_only_when_what_was_held_out_could_move_b():
    from recommender.evaluation import holdout_split

    x = random_matrix(users=3000)
    small = holdout_split(x, 0.2, seed=1, max_users=10)
    assert small.held_out_share <= EASE.REFIT_SHARE
    model = EASE({"l2": 5.0})
    model.fit(small.train)
    before = model.to_arrays()["weights"].copy()
    model.absorb(x, small.users, small.held_out_share)
    assert np.array_equal(model.to_arrays()["weights"], before)
    large = holdout_split(x, 0.2, seed=1)
    model.fit(large.train)
    model.absorb(x, large.users, large.held_out_share)
    full = EASE({"l2": 5.0})
    full.fit(x)
    assert np.allclose(model.to_arrays()["weights"], full._weights, atol=1e-6)


@pytest.mark.parametrize("n, leaf", [(1, 64), (64, 64), (301, 64), (517, 100)])
def test_the_blocked_inverse_matches_a_float64_inverse(n, leaf):
    from recommender.models.ease import spd_inverse

    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, n + 5))
    g = a @ a.T + 0.5 * np.eye(n)  # symmetric positive definite, condition number in the hundreds
    inverse = spd_inverse(g.astype(np.float32), leaf)
    reference = np.linalg.inv(g)
    assert inverse.dtype == np.float32
    assert np.abs(inverse - reference).max() <= 1e-4 * np.abs(reference).max()
    assert np.array_equal(inverse, inverse.T)
