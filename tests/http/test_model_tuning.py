"""EASE and tuned, cancellable training runs through the HTTP API and the command line."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from service.usecases.model_training import request_training
from service.usecases.training_run import run_training
from tests.conftest import wait_for_model, wait_until
from tests.helpers import get_ok, iso, post_ok, train, two_tribes

FAST_ALS = {"factors": 8, "iterations": 5}


def model(client, auth, version):
    return get_ok(client, f"/v1/models/{version}", auth("editor"))


def join_runner(version: str) -> None:
    """Wait for a thread-runner run to end, so that it cannot write into the next test's database."""
    for thread in threading.enumerate():
        if thread.name == f"train-{version}":
            thread.join(60)
            assert not thread.is_alive()


def test_ease_ranks_what_shoppers_bought_in_the_same_visit_above_what_they_bought_months_apart(client, auth):
    # 40 shoppers bought "lamp" and "bulb" minutes apart; 44 bought "lamp" and "shade" three months apart. Counted
    # by shopper alone, "shade" goes with "lamp" more often; counted by visit, "bulb" does.
    h = auth("storefront")
    events, day = [], 86_400.0
    for u in range(84):
        start = 1_780_000_000.0 + u * day
        other, gap = ("bulb", 300.0) if u < 40 else ("shade", 90 * day)
        for k, (item, at) in enumerate([("lamp", start), (other, start + gap), (f"filler{u % 7}", start + 200 * day)]):
            events.append({"event_id": f"v{u}-{k}", "user_id": f"v{u}", "item_id": item, "type": "purchase", "timestamp": iso(at)})
    post_ok(client, "/v1/events", {"events": events}, h)
    post_ok(client, "/v1/events", {"events": [{"event_id": "buyer", "user_id": "buyer", "item_id": "lamp", "type": "purchase"}]}, h)
    ranked = {}
    for weight in (0.5, 0.0):
        trained = train(client, auth("editor"), {"algorithm": "ease", "params": {"l2": 5.0, "session_weight": weight}})
        assert trained["status"] == "ready", trained
        assert trained["data"]["visits_used"] == (40 * 2 + 44 * 3 + 1 if weight else 0)  # the buyer's one visit too
        ranked[weight] = [i["item_id"] for i in get_ok(client, "/v1/users/buyer/recommendations?n=2", h)["items"]]
    assert ranked == {0.5: ["bulb", "shade"], 0.0: ["shade", "bulb"]}


def test_ease_serves_a_user_who_is_new_since_training_from_their_events(client, auth):
    h = auth("storefront")
    two_tribes(client, h)
    trained = train(client, auth("editor"), {"algorithm": "ease", "params": {"l2": 10.0}})
    assert trained["status"] == "ready" and trained["active"], trained
    assert trained["data"]["items_used"] == 24 and trained["data"]["items_dropped"] == 0
    assert trained["metrics"]["precision_at_10"] > trained["metrics"]["popularity_precision_at_10"]
    events = [{"event_id": f"n{i}", "user_id": "newcomer", "item_id": f"b{i}", "type": "click"} for i in range(3)]
    post_ok(client, "/v1/events", {"events": events}, h)
    body = get_ok(client, "/v1/users/newcomer/recommendations?n=5", h)
    assert body["strategy"] == "personalized" and body["model_version"] == trained["version"]
    assert [i["item_id"][0] for i in body["items"]] == ["b"] * 5
    known = get_ok(client, "/v1/users/ua3/recommendations?n=5", h)
    assert known["strategy"] == "personalized" and all(i["item_id"].startswith("a") for i in known["items"])
    similar = get_ok(client, "/v1/items/a2/similar?n=5", h)
    assert all(i["item_id"].startswith("a") for i in similar["items"])


def test_a_holdout_that_left_nobody_to_rank_reports_no_score_and_a_search_on_it_is_refused(client, auth):
    # A score of 0 measured on no user read as a model that recommends nothing right; a search on such a
    # split would have picked its parameters at random.
    two_tribes(client, auth("storefront"))
    editor = auth("editor")
    nobody = {"test_fraction": 1e-9}
    done = train(client, editor, {"algorithm": "als", "params": FAST_ALS, "evaluation": nobody})
    assert done["status"] == "ready", done
    assert done["metrics"]["users_evaluated"] == 0
    assert all(done["metrics"][m] is None for m in ("precision_at_10", "ndcg_at_10", "recall_at_10", "popularity_precision_at_10"))
    tuned = train(client, editor, {"algorithm": "als", "params": FAST_ALS, "evaluation": nobody, "tune": {"trials": 2}})
    assert tuned["status"] == "failed" and "held out no interaction to rank" in tuned["error"], tuned


def test_a_tuned_run_reports_every_trial_and_keeps_the_best(client, auth):
    two_tribes(client, auth("storefront"))
    tune = {"trials": 3, "metric": "precision_at_10", "space": {"factors": [4, 16], "regularization": [0.01, 1.0, "log"]}, "seed": 7}
    done = train(client, auth("editor"), {"algorithm": "als", "params": {"iterations": 5}, "tune": tune})
    assert done["status"] == "ready", done
    assert done["tune"] == tune
    assert len(done["tuning"]) == 3 and done["data"]["progress"] == {"trials_done": 3, "trials": 3}
    best = max(done["tuning"], key=lambda t: t["metric"])
    assert done["params"] == best["params"] and done["params"]["iterations"] == 5
    for trial in done["tuning"]:
        assert 4 <= trial["params"]["factors"] <= 16 and 0.01 <= trial["params"]["regularization"] <= 1.0 and trial["seconds"] > 0
    assert done["data"]["timings"]["tuning_seconds"] > 0
    assert get_ok(client, "/v1/models", auth("editor"))["active_version"] == done["version"]


def test_a_cancelled_tuned_run_stops_and_activates_nothing(client, auth):
    two_tribes(client, auth("storefront"))
    editor = auth("editor")
    started = post_ok(client, "/v1/models", {"algorithm": "als", "params": FAST_ALS, "tune": {"trials": 1000}}, editor, status=202)
    version = started["version"]
    running = wait_until(lambda: (b := model(client, auth, version))["tuning"] and b, timeout=60)
    assert running["status"] == "training" and running["data"]["progress"]["trials"] == 1000
    cancelled = post_ok(client, f"/v1/models/{version}/cancel", None, editor)
    # The contract's statuses are training, ready and failed: a client polling for one of the last two stops.
    assert (cancelled["status"], cancelled["cancelled"], cancelled["active"]) == ("failed", True, False) and cancelled["finished_at"]
    assert "cancelled" in cancelled["error"]
    join_runner(version)
    after = model(client, auth, version)
    assert (after["status"], after["cancelled"]) == ("failed", True) and len(after["tuning"]) < 1000
    assert get_ok(client, "/v1/models", editor)["active_version"] is None
    assert client.post(f"/v1/models/{version}/cancel", headers=editor).status_code == 409
    assert client.post(f"/v1/models/{version}/activate", headers=editor).status_code == 409
    assert client.post("/v1/models/nope/cancel", headers=editor).status_code == 404
    assert get_ok(client, "/v1/users/ua1/recommendations", auth("storefront"))["model_version"] is None


def test_a_ready_run_cannot_be_cancelled(client, auth):
    two_tribes(client, auth("storefront"))
    done = train(client, auth("editor"))
    resp = client.post(f"/v1/models/{done['version']}/cancel", headers=auth("editor"))
    assert resp.status_code == 409 and "ready" in resp.get_json()["error"]["message"]


def test_a_run_cancelled_between_stages_does_not_come_back(client, auth, db, config):
    two_tribes(client, auth("storefront"))
    record = request_training(db, config, "als", FAST_ALS, True)

    def cancel_on_first_message(message: str) -> None:
        if not cancel_on_first_message.sent:  # type: ignore[attr-defined]
            cancel_on_first_message.sent = True  # type: ignore[attr-defined]
            assert client.post(f"/v1/models/{record.version}/cancel", headers=auth("editor")).status_code == 200

    cancel_on_first_message.sent = False  # type: ignore[attr-defined]
    final = run_training(db, config, record.version, progress=cancel_on_first_message)
    assert final.status == "cancelled" and final.metrics == {} and final.error is None
    assert not (config.model_dir / f"{record.version}.npz").exists()
    assert get_ok(client, "/v1/models", auth("editor"))["active_version"] is None
    again = run_training(db, config, record.version)  # a runner that starts late refuses at once
    assert again.status == "cancelled"


def test_a_run_cancelled_during_its_fit_stops_between_iterations(client, auth, db, config, monkeypatch):
    # A fit of hundreds of iterations used to run to its end after a cancel, holding its core meanwhile.
    from recommender.models.factors import FactorModel
    from service.usecases import training_run

    monkeypatch.setattr(training_run, "STOP_CHECK_SECONDS", 0.0)
    iterations: list[int] = []
    between = FactorModel._between_iterations
    monkeypatch.setattr(FactorModel, "_between_iterations", lambda self, *a: iterations.append(1) or between(self, *a))
    two_tribes(client, auth("storefront"))
    record = request_training(db, config, "als", {"factors": 8, "iterations": 500}, True, evaluation={"evaluate": False})

    def cancel_when_the_fit_starts(message: str) -> None:
        if message.startswith("fitting"):
            assert client.post(f"/v1/models/{record.version}/cancel", headers=auth("editor")).status_code == 200

    final = run_training(db, config, record.version, progress=cancel_when_the_fit_starts)
    assert final.status == "cancelled" and len(iterations) == 1  # stopped after its first iteration, not its 500th


def test_training_runs_beyond_the_limit_are_refused_until_one_ends(client, auth, db, config):
    two_tribes(client, auth("storefront"))
    editor = auth("editor")
    waiting = [request_training(db, config, "als", FAST_ALS, False).version for _ in range(config.training_max_runs)]  # recorded, not started
    refused = client.post("/v1/models", json={"params": FAST_ALS}, headers=editor)
    assert refused.status_code == 409, refused.get_json()
    message = refused.get_json()["error"]["message"]
    assert f"{config.training_max_runs} training runs are at work" in message and all(v in message for v in waiting)
    post_ok(client, f"/v1/models/{waiting[0]}/cancel", None, editor)
    run_training(db, config, waiting[0])  # its process starts, finds the run cancelled, and ends
    join_runner(train(client, editor, {"params": FAST_ALS})["version"])


def test_a_run_cancelled_before_its_process_first_beats_holds_its_place_until_the_process_ends(client, auth, db, config):
    # Its place was free at once: a start and a cancel, over and over, had a dozen training processes at work at the limit of two.
    two_tribes(client, auth("storefront"))
    editor = auth("editor")
    starting = [request_training(db, config, "als", FAST_ALS, False).version for _ in range(config.training_max_runs)]
    for version in starting:
        post_ok(client, f"/v1/models/{version}/cancel", None, editor)
    refused = client.post("/v1/models", json={"params": FAST_ALS}, headers=editor)
    assert refused.status_code == 409 and all(v in refused.get_json()["error"]["message"] for v in starting)
    assert run_training(db, config, starting[0]).status == "cancelled"  # its process starts, finds the run cancelled, and ends
    join_runner(train(client, editor, {"params": FAST_ALS})["version"])


def test_a_cancelled_run_whose_process_still_works_holds_its_place_until_it_ends(client, auth, db, config):
    # A cancelled fit that cannot stop midway (EASE's one inversion) went on using its core while new runs started.
    from service.store import model_versions

    two_tribes(client, auth("storefront"))
    editor = auth("editor")
    working, waiting = (request_training(db, config, "als", FAST_ALS, False).version for _ in range(2))
    assert model_versions.beat(db, working, "host:1")  # its process runs
    post_ok(client, f"/v1/models/{working}/cancel", None, editor)
    model_versions.still_running(db, working)  # and beats on until it notices
    refused = client.post("/v1/models", json={"params": FAST_ALS}, headers=editor)
    assert refused.status_code == 409 and working in refused.get_json()["error"]["message"]
    model_versions.exited(db, working)  # the process is done
    post_ok(client, f"/v1/models/{waiting}/cancel", None, editor)
    join_runner(train(client, editor, {"params": FAST_ALS})["version"])


def test_a_cancelled_run_in_another_process_stops_at_its_next_trial(client, auth, db, config):
    two_tribes(client, auth("storefront"))
    record = request_training(db, config, "als", FAST_ALS, True, tune={"trials": 1000})
    env = {**os.environ, **config.as_env(), "OPENBLAS_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "service.usecases.train_job", record.version], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: model(client, auth, record.version)["tuning"], timeout=60)
        post_ok(client, f"/v1/models/{record.version}/cancel", None, auth("editor"))
        cancelled_at = time.monotonic()
        assert child.wait(timeout=30) == 0
        assert time.monotonic() - cancelled_at < 10
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    after = model(client, auth, record.version)
    assert (after["status"], after["cancelled"]) == ("failed", True) and len(after["tuning"]) < 1000 and not after["active"]


@pytest.mark.parametrize(
    "tune, field",
    [
        ({"trials": 0}, "tune.trials"),
        ({"trials": "many"}, "tune.trials"),
        ({"metric": "mrr"}, "tune.metric"),
        ({"seed": -1}, "tune.seed"),
        ({"budget": 3}, "tune.budget"),
        ({"space": {"colour": [1, 2]}}, "tune.space.colour"),
        ({"space": {"factors": [64, 16]}}, "tune.space.factors"),
        ({"space": {"factors": [0, 16]}}, "tune.space.factors"),
        ({"space": {"regularization": [0, 1, "log"]}}, "tune.space.regularization"),
        ({"space": {"regularization": "wide"}}, "tune.space.regularization"),
        ({"space": {"iterations": [5, 10]}}, "tune.space.iterations"),  # also fixed in params below
        ("thirty", "tune"),
    ],
)
def test_bad_tune_requests_are_422_naming_the_field(client, auth, tune, field):
    resp = client.post("/v1/models", json={"algorithm": "als", "params": {"iterations": 3}, "tune": tune}, headers=auth("editor"))
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"]["details"][0]["field"] == field
    assert get_ok(client, "/v1/models", auth("editor"))["models"] == []


def test_popularity_has_nothing_to_tune(client, auth):
    resp = client.post("/v1/models", json={"algorithm": "popularity", "tune": {"trials": 2}}, headers=auth("editor"))
    assert resp.status_code == 422 and resp.get_json()["error"]["details"][0]["field"] == "tune.space"


def test_the_cli_tunes_with_a_progress_bar_and_prints_the_chosen_params(runner, client, auth):
    two_tribes(client, auth("storefront"))
    # Regularization fixed: on 60 users a strong one shrinks the factors to zero, and such a trial fails.
    result = runner.invoke(args=["train", "--param", "iterations=3", "--param", "regularization=0.1", "--tune-trials", "2", "--tune-metric", "precision_at_10",
                                 "--tune-space", "factors=[4, 8]"])
    assert result.exit_code == 0, result.output
    assert "tuning" in result.output and "trial 2/2" in result.output
    assert "params: {" in result.output and "tuning: 2 trials, best precision_at_10" in result.output
    bad = runner.invoke(args=["train", "--tune-trials", "2", "--tune-space", "colour=[1, 2]"])
    assert bad.exit_code != 0 and "tune.space.colour" in bad.output
    twice = runner.invoke(args=["train", "--tune-trials", "2", "--tune-space", "factors=[4, 8]", "--tune-space", "factors=[8, 9]"])
    assert twice.exit_code == 2 and "'factors' is given twice" in twice.output
    deep = runner.invoke(args=["train", "--param", "factors=" + "[" * 100_000])
    assert deep.exit_code == 2 and "nested too deeply" in deep.output and "Traceback" not in deep.output


def test_ease_beyond_max_items_fails_the_run_with_the_remedy(client, auth):
    two_tribes(client, auth("storefront"))
    failed = train(client, auth("editor"), {"algorithm": "ease", "params": {"max_items": 3, "min_coverage": 0.9}})
    assert failed["status"] == "failed" and "raise max_items" in failed["error"] and not failed["active"]
    assert failed["error"].startswith("ease: the 3 most interacted")  # the model's sentence, not "ValueError: ..."
    kept = wait_for_model(client, auth("editor"), train(client, auth("editor"), {"algorithm": "ease", "params": {"max_items": 20, "min_coverage": 0.5}})["version"])
    assert kept["status"] == "ready" and kept["data"]["items_used"] == 20 and kept["data"]["items_dropped"] == 4


def test_a_fit_that_diverges_fails_with_the_remedy_and_a_search_steps_around_it(client, auth):
    two_tribes(client, auth("storefront"))
    bpr = {"algorithm": "bpr", "params": {"factors": 8, "iterations": 20}}
    failed = train(client, auth("editor"), {**bpr, "params": {**bpr["params"], "learning_rate": 50.0}})
    assert failed["status"] == "failed" and not failed["active"]
    assert failed["error"].startswith("bpr: the fit diverged") and "lower learning_rate" in failed["error"]  # not implicit's "ModelFitError: NaN ..."
    tune = {"trials": 6, "space": {"learning_rate": [0.001, 1000.0, "log"]}, "seed": 2}
    searched = train(client, auth("editor"), {**bpr, "tune": tune})
    assert searched["status"] == "ready", searched
    assert 0 < len(searched["tuning"]) < 6 and searched["data"]["progress"] == {"trials_done": 6, "trials": 6}
    assert searched["params"]["learning_rate"] in [t["params"]["learning_rate"] for t in searched["tuning"]]


def test_a_run_whose_every_trial_fails_shows_them_done_and_says_why(client, auth):
    two_tribes(client, auth("storefront"))
    failed = train(client, auth("editor"), {"algorithm": "ease", "params": {"max_items": 3, "min_coverage": 0.9}, "tune": {"trials": 3, "space": {"l2": [1, 100]}}})
    assert failed["status"] == "failed" and failed["error"].startswith("every tuning trial failed") and "raise max_items" in failed["error"]
    assert failed["data"]["progress"] == {"trials_done": 3, "trials": 3} and failed["tuning"] == []


def test_ease_answers_n_items_while_the_catalogue_has_them_beyond_max_items(client, auth):
    """Items beyond max_items have no score: the scored ones first, then the most popular of the rest."""
    shop, editor = auth("storefront"), auth("editor")
    post_ok(client, "/v1/items", {"items": [{"item_id": f"i{k}", "category": "head" if k < 5 else "tail"} for k in range(10)]}, shop)
    clicks = [(f"u{u}", "i0") for u in range(8)] + [(f"u{u}", "i1") for u in range(6)] + [(f"u{u}", "i2") for u in range(4)]
    views = [("u0", "i5"), ("u1", "i6"), ("u1", "i5"), ("u2", "i7"), ("u3", "i8"), ("u4", "i9"), ("u5", "i5")]
    events = [{"event_id": f"e{k}", "user_id": u, "item_id": i, "type": "click"} for k, (u, i) in enumerate(clicks)]
    events += [{"event_id": f"v{k}", "user_id": u, "item_id": i, "type": "view"} for k, (u, i) in enumerate(views)]
    post_ok(client, "/v1/events", {"events": events}, shop)
    version = train(client, editor, {"algorithm": "ease", "params": {"l2": 5, "max_items": 3, "min_coverage": 0}})
    assert version["status"] == "ready" and version["data"]["items_used"] == 3
    mine = get_ok(client, "/v1/users/u7/recommendations?n=10", shop)
    ids = [i["item_id"] for i in mine["items"]]
    # Every item with events (i3 and i4 have none: no model knows them), the three that B spans first.
    assert mine["strategy"] == "personalized" and len(ids) == 8 and set(ids[:3]) == {"i0", "i1", "i2"}
    assert ids[3] == "i5" and set(ids[3:]) == {"i5", "i6", "i7", "i8", "i9"}  # the most popular of the unscored first
    scores = [i["score"] for i in mine["items"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 8
    tail = get_ok(client, "/v1/users/u7/recommendations?n=10&category=tail", shop)
    assert [i["item_id"] for i in tail["items"]][:1] == ["i5"] and {i["item_id"] for i in tail["items"]} == {f"i{k}" for k in range(5, 10)}
    similar = get_ok(client, "/v1/items/i0/similar?n=10", shop)
    assert len(similar["items"]) == 7 and "i0" not in {i["item_id"] for i in similar["items"]}
