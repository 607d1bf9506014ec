"""MovieLens latest-small in the library: EASE against popularity, and a short search end to end (bench/quality.py measures the rest)."""
from __future__ import annotations

import csv

import pytest
import scipy.sparse as sp

from recommender.evaluation import evaluate, holdout_split
from recommender.matrix import CodedEvents, InteractionMatrix, MatrixSettings, build_matrix
from recommender.models import make_recommender
from recommender.tuning import TuneSettings, search_space, tune
from tests.datasets import MOVIELENS

pytestmark = pytest.mark.skipif(not (MOVIELENS / "ratings.csv").exists(), reason="needs MovieLens latest-small (MOVIELENS_DIR)")


@pytest.fixture(scope="module")
def rated() -> InteractionMatrix:
    """Every rating as a purchase at the time it was rated, as bench/quality.py sends them."""
    with open(MOVIELENS / "ratings.csv") as f:
        rows = list(csv.DictReader(f))
    events = CodedEvents.from_ids([r["userId"] for r in rows], [r["movieId"] for r in rows], ["purchase"] * len(rows), [float(r["timestamp"]) for r in rows])
    return build_matrix(events, MatrixSettings(), now=0.0)


@pytest.fixture(scope="module")
def ratings(rated: InteractionMatrix) -> sp.csr_matrix:
    return rated.confidence


def test_ease_beats_popularity_by_far(ratings):
    split = holdout_split(ratings, 0.2, seed=2026)
    scores = {}
    # The 3,000 most rated films hold most ratings and keep B small enough for a quick test.
    for algorithm, params in (("popularity", {}), ("ease", {"max_items": 3000})):
        model = make_recommender(algorithm, params)
        model.fit(split.train)
        scores[algorithm] = evaluate(model, split, max_users=None).precision_at_10
        if algorithm == "ease":
            assert model.fit_report()["items_used"] == 3000 and model.fit_report()["items_dropped"] > 5000
    assert scores["ease"] >= 1.6 * scores["popularity"], scores


def test_films_rated_in_one_sitting_lift_ease(rated):
    # Visits are cut from the ratings' times; the split holds its cells out of them too.
    split = holdout_split(rated.confidence, 0.2, seed=2026)
    precision = {}
    for weight in (0.0, 0.5):
        model = make_recommender("ease", {"max_items": 3000, "session_weight": weight})
        model.visits_of = rated.visits
        model.fit(split.train)
        precision[weight] = evaluate(model, split, max_users=None).precision_at_10
    assert precision[0.5] >= 1.01 * precision[0.0], precision


def test_a_short_search_keeps_its_best_trial(ratings):
    fixed = {"iterations": 5}
    space = search_space("als", fixed, {"factors": [16, 64, "log"]})
    seen = []
    result = tune(ratings, "als", fixed, space, TuneSettings(trials=3, metric="ndcg_at_10", seed=2), on_trial=lambda t, done: seen.append(done))
    assert seen == [1, 2, 3] and not result.stopped
    assert {tuple(sorted(t.params)) for t in result.trials} == {("confidence_scale", "factors", "iterations", "regularization")}
    assert all(0 < t.metric < 1 for t in result.trials)
    assert result.best is not None and result.best.metric == max(t.metric for t in result.trials)
