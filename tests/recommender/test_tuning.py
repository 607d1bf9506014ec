"""The search: seeded and repeatable, stoppable between trials, and strict about the space it is given."""
from __future__ import annotations

import numpy as np
import pytest

from recommender.search_space import Choice, Range
from recommender.tuning import TuneError, TuneSettings, search_space, tune
from tests.recommender.test_library import synthetic_matrix

FIXED = {"iterations": 3}


@pytest.fixture(scope="module")
def matrix():
    return synthetic_matrix(users=600, items=120, events=12_000)


def run(matrix, trials=4, seed=3, **kwargs):
    space = search_space("als", FIXED, {"factors": [4, 16], "regularization": [0.01, 10.0, "log"]})
    return tune(matrix, "als", FIXED, space, TuneSettings(trials=trials, metric="precision_at_10", seed=seed), eval_users=300, **kwargs)


def test_a_seed_repeats_the_same_trials_and_the_best_is_among_them(matrix):
    seen = []
    first = run(matrix, on_trial=lambda trial, done: seen.append((done, trial.params)))
    second = run(matrix)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.metric for t in first.trials] == pytest.approx([t.metric for t in second.trials])
    assert seen == [(k + 1, t.params) for k, t in enumerate(first.trials)]
    assert not first.stopped and len(first.trials) == 4
    assert first.best in first.trials and first.best.metric == max(t.metric for t in first.trials)
    for t in first.trials:
        assert 4 <= t.params["factors"] <= 16 and isinstance(t.params["factors"], int)
        assert 0.01 <= t.params["regularization"] <= 10.0 and t.params["iterations"] == 3
        assert t.seconds > 0


def test_should_stop_ends_the_search_between_trials(matrix):
    done = []
    result = run(matrix, trials=10, on_trial=lambda trial, k: done.append(k), should_stop=lambda: len(done) >= 2)
    assert result.stopped and len(result.trials) == 2


def test_the_default_space_leaves_out_what_params_fix_and_takes_overrides():
    space = search_space("als", {"factors": 32}, {"regularization": [0.5, 5.0]})
    assert "factors" not in space
    assert space["regularization"] == Range(0.5, 5.0) and space["iterations"] == Range(5, 30)
    assert search_space("item_knn", {}, {})["similarity"] == Choice(("bm25", "cosine"))
    assert isinstance(search_space("ease", {}, {"l2": [10, 100]})["l2"].low, float)
    assert set(search_space("ease", {}, {})) == {"l2"}
    assert search_space("ease", {}, {"dropout": [0, 0.5]})["dropout"] == Range(0.0, 0.5)
    assert isinstance(search_space("ease", {}, {"dropout": [0, 0.5]})["dropout"].low, float)
    assert set(search_space("ease", {"dropout": 0.25}, {})) == {"l2"}


@pytest.mark.parametrize(
    "algorithm, fixed, overrides, field, words",
    [
        ("als", {}, {"colour": [1, 2]}, "space.colour", "no parameter"),
        ("als", {}, {"factors": [64, 16]}, "space.factors", "below high"),
        ("als", {}, {"factors": [0, 16]}, "space.factors", "between 1 and 1024"),
        ("als", {}, {"factors": [8.5, 16]}, "space.factors", "integers"),
        ("als", {}, {"regularization": [0, 1, "log"]}, "space.regularization", "above 0"),
        ("als", {}, {"regularization": [0.1, 1, "cubic"]}, "space.regularization", "third entry"),
        ("als", {}, {"regularization": "wide"}, "space.regularization", "expected"),
        ("als", {}, {"regularization": [True, 2]}, "space.regularization", "expected"),
        ("als", {"factors": 8}, {"factors": [4, 16]}, "space.factors", "also fixed"),
        ("ease", {}, {"dropout": [0, 1]}, "space.dropout", "between 0 and 0.99"),
        ("ease", {}, {"dropout": [-0.5, 0.5]}, "space.dropout", "between 0 and 0.99"),
        ("item_knn", {}, {"similarity": {"choices": ["bm25", "jaccard"]}}, "space.similarity", "similarity"),
        ("item_knn", {}, {"similarity": {"choices": []}}, "space.similarity", "empty"),
        ("als", {}, {"factors": {"choices": [True, 64]}}, "space.factors", "an integer"),
        ("als", {}, {"factors": {"choices": [32, 64.5]}}, "space.factors", "an integer"),
        ("popularity", {}, {}, "space", "no parameter left"),
    ],
)
def test_bad_spaces_name_the_parameter(algorithm, fixed, overrides, field, words):
    with pytest.raises(TuneError) as caught:
        search_space(algorithm, fixed, overrides)
    assert caught.value.field == field
    assert words in caught.value.reason


@pytest.mark.parametrize(
    "raw, field",
    [({"trials": 0}, "trials"), ({"trials": 2.5}, "trials"), ({"metric": "mrr"}, "metric"), ({"seed": -1}, "seed"), ({"space": [1]}, "space"), ({"budget": 3}, "budget")],
)
def test_bad_settings_name_the_setting(raw, field):
    with pytest.raises(TuneError) as caught:
        TuneSettings.parse(raw)
    assert caught.value.field == field


def test_a_trial_the_model_refuses_is_a_failure_and_the_search_goes_on(matrix):
    # EASE refuses to fit when the items it keeps hold too little of the interactions: small max_items.
    space = search_space("ease", {"l2": 100.0, "dropout": 0.0}, {"max_items": [1, 120]})
    result = tune(matrix, "ease", {"l2": 100.0, "dropout": 0.0}, space, TuneSettings(trials=8, metric="precision_at_10", seed=1), eval_users=300)
    assert result.failures and result.trials and len(result.failures) + len(result.trials) == 8
    assert all("max_items" in why or "interactions" in why for _, why in result.failures)
    assert min(t.params["max_items"] for t in result.trials) > max(p["max_items"] for p, _ in result.failures)
    assert result.best is not None and not result.stopped


def test_a_trial_whose_fit_diverges_is_a_failure_and_the_search_goes_on(matrix):
    # BPR's factors become NaN at a learning rate of 10 or so: implicit raises its own error, not a ValueError.
    space = search_space("bpr", {"factors": 8, "iterations": 20}, {"learning_rate": [0.001, 1000.0, "log"]})
    result = tune(matrix, "bpr", {"factors": 8, "iterations": 20}, space, TuneSettings(trials=8, metric="precision_at_10", seed=2), eval_users=300)
    assert result.failures and result.trials and len(result.failures) + len(result.trials) == 8
    assert all(why.startswith("bpr: the fit diverged") and "learning_rate" in why for _, why in result.failures)
    assert result.best is not None and np.isfinite(result.best.metric)
