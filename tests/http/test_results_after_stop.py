"""A stopped experiment's results measure what its users did before the stop, whenever it arrives."""
from __future__ import annotations

import threading
import time

from service.store import outcomes as outcomes_store
from service.usecases import series
from service.usecases.experiment_cache import ExperimentCache
from tests.experiment_helpers import ab_definition, assign, running
from tests.helpers import get_ok, iso, post_ok

DAY = 86_400


def _outcome(oid: str, user: str, metric: str, value: float, at: float) -> dict:
    return {"outcome_id": oid, "experiment": "points-q4", "user_id": user, "metric": metric, "value": value, "timestamp": iso(at)}


def _purchase(eid: str, user: str, value: float, at: float) -> dict:
    return {"event_id": eid, "user_id": user, "item_id": "i1", "type": "purchase", "value": value, "timestamp": iso(at)}


def _totals(client, analyst: dict[str, str], metric: str) -> float:
    answer = get_ok(client, f"/v1/experiments/points-q4/results?metric={metric}", analyst)
    return sum(arm["total"] for arm in answer["arms"])


def test_what_users_do_after_the_stop_counts_in_no_result_and_what_they_did_before_it_still_does(client, auth):
    shop, editor, analyst = auth("storefront"), auth("editor"), auth("analyst")
    running(client, editor, ab_definition())
    now = time.time()
    for i in range(6):
        assign(client, shop, "points-q4", f"u{i}", timestamp=iso(now - 10 * DAY))
    outcomes = [
        _outcome("o0", "u0", "spend", 10, now - 5 * DAY),
        _outcome("o1", "u1", "conversion", 1, now - 5 * DAY),
        # Stamped ahead of the clock and received before the stop: taken back at the stop.
        _outcome("o2", "u2", "spend", 7, now + 2 * DAY),
        _outcome("o3", "u3", "conversion", 1, now + 2 * DAY),
    ]
    assert post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)["accepted"] == 4
    for oid, value in (("big", 1e12), ("small", 1e-5)):  # batch by batch: the totals keep the 1e-5 a double sum rounds away
        assert post_ok(client, "/v1/outcomes", {"outcomes": [_outcome(oid, "u3", "spend", value, now + DAY)]}, shop)["accepted"] == 1
    post_ok(client, "/v1/events", {"events": [_purchase("e0", "u0", 20, now - 4 * DAY), _purchase("e4", "u4", 30, now + 3 * DAY)]}, shop)
    assert (_totals(client, analyst, "conversion"), _totals(client, analyst, "revenue")) == (2, 50)

    stopped_at = post_ok(client, "/v1/experiments/points-q4/stop", None, editor)["stopped_at"]
    after = time.time() + 60
    # Dated at the very moment the answer gives for the stop: after it, whatever the clock's digits below a microsecond.
    post_ok(client, "/v1/events", {"events": [{**_purchase("at", "u0", 1000, 0), "timestamp": stopped_at}]}, shop)
    post_ok(client, "/v1/outcomes", {"outcomes": [{**_outcome("at", "u0", "spend", 1000, 0), "timestamp": stopped_at}]}, shop)
    late = [_outcome("o4", "u4", "spend", 100, after), _outcome("o5", "u5", "spend", 3, now - 3 * DAY), _outcome("o6", "u5", "conversion", 1, after)]
    # Stored like any other (a retry is a duplicate), but only the one dated before the stop counts.
    assert post_ok(client, "/v1/outcomes", {"outcomes": late}, shop) == {"accepted": 3, "duplicates": 0, "ignored": 0}
    assert post_ok(client, "/v1/outcomes", {"outcomes": late}, shop) == {"accepted": 0, "duplicates": 3, "ignored": 0}
    post_ok(client, "/v1/events", {"events": [_purchase("e1", "u1", 40, after), _purchase("e2", "u2", 5, now - 2 * DAY)]}, shop)

    assert _totals(client, analyst, "spend") == 13  # u0's 10 and u5's late 3
    assert _totals(client, analyst, "conversion") == 1  # u1 only
    assert _totals(client, analyst, "revenue") == 25  # u0's 20 and u2's late 5
    assert _totals(client, analyst, "purchase_conversion") == 2
    results = get_ok(client, "/v1/experiments/points-q4/results?metric=spend", analyst)
    assert sum(arm["users"] for arm in results["arms"]) == 6  # every exposed user stays in their arm
    assert any(note.startswith("stopped at ") for note in results["notes"])

    for metric, expected in (("spend", 13), ("revenue", 25), ("conversion", 1)):
        days = get_ok(client, f"/v1/experiments/points-q4/results/daily?metric={metric}", analyst)["days"]
        assert sum(arm["total"] for arm in days[-1]["arms"]) == expected
        assert days[-1]["date"] <= iso(time.time())[:10]


def test_a_stopped_experiment_s_retention_counts_the_users_whose_day_ended_before_the_stop(client, auth, db):
    shop, editor = auth("storefront"), auth("editor")
    running(client, editor, ab_definition())
    now = time.time()
    for i in range(4):
        assign(client, shop, "points-q4", f"old{i}", timestamp=iso(now - 10 * DAY))
        assign(client, shop, "points-q4", f"new{i}", timestamp=iso(now - 3 * DAY))
    post_ok(client, "/v1/experiments/points-q4/stop", None, editor)
    later = now + 30 * DAY
    curve = series.retention(db, ExperimentCache(), "points-q4", 7, 0.05, now=later)
    eligible = {k: sum(arm["days"][k - 1]["eligible"] for arm in curve["arms"]) for k in range(1, 8)}
    # Day 2 of a user exposed 3 days before the stop ended before it; day 3 ends as the stop comes.
    assert eligible[1] == eligible[2] == 8
    assert eligible[3] == eligible[7] == 4


def test_an_outcome_batch_sent_while_the_stop_commits_waits_for_it_and_counts_nothing_after_it(client, auth, app, monkeypatch):
    shop, editor, analyst = auth("storefront"), auth("editor"), auth("analyst")
    running(client, editor, ab_definition())
    assign(client, shop, "points-q4", "u1")
    inside, release = threading.Event(), threading.Event()
    withdraw = outcomes_store.withdraw_from

    def held(session, key, at):  # the stop's transaction stays open until released
        withdraw(session, key, at)
        inside.set()
        release.wait(30)

    monkeypatch.setattr(outcomes_store, "withdraw_from", held)
    answers: dict[str, int] = {}
    stop = threading.Thread(target=lambda: answers.update(stop=app.test_client().post("/v1/experiments/points-q4/stop", headers=editor).status_code))
    stop.start()
    assert inside.wait(30)
    batch = {"outcomes": [_outcome("during", "u1", "spend", 5, time.time() + 60)]}
    send = threading.Thread(target=lambda: answers.update(batch=app.test_client().post("/v1/outcomes", json=batch, headers=shop).status_code))
    send.start()
    time.sleep(0.3)  # the batch's insert waits behind the stop's lock on outcomes (PostgreSQL) or for the write lock (SQLite)
    release.set()
    stop.join(30)
    send.join(30)
    assert answers == {"stop": 200, "batch": 200}
    assert _totals(client, analyst, "spend") == 0


def test_an_outcome_batch_in_flight_holds_up_a_stop_but_not_a_pause_or_a_change(client, auth, app, monkeypatch):
    shop, editor = auth("storefront"), auth("editor")
    running(client, editor, ab_definition())
    assign(client, shop, "points-q4", "u1")
    inside, release = threading.Event(), threading.Event()
    insert_new = outcomes_store._insert_new

    def held(session, outcomes, now):  # the batch's transaction stays open, its outcomes written, until released
        written = insert_new(session, outcomes, now)
        inside.set()
        release.wait(30)
        return written

    monkeypatch.setattr(outcomes_store, "_insert_new", held)
    answers: dict[str, int] = {}
    batch = {"outcomes": [_outcome("slow", "u1", "spend", 5, time.time() - 60)]}
    send = threading.Thread(target=lambda: answers.update(batch=app.test_client().post("/v1/outcomes", json=batch, headers=shop).status_code))
    send.start()
    try:
        assert inside.wait(30)
        if client.application.extensions["stickyloop"].db.is_sqlite:
            return  # SQLite serialises writers: every change waits for the batch (for its busy timeout)
        # A change and a pause need nothing of the outcomes being written.
        assert client.patch("/v1/experiments/points-q4", json={"name": "renamed"}, headers=editor).status_code == 200
        assert client.post("/v1/experiments/points-q4/pause", headers=editor).status_code == 200
        # A stop waits for the batch, at most SETTLE_SECONDS, and then changes nothing.
        busy = client.post("/v1/experiments/points-q4/stop", headers=editor)
        assert busy.status_code == 503 and "outcome batches" in busy.get_json()["error"]["message"]
        assert get_ok(client, "/v1/experiments/points-q4", editor)["status"] == "paused"
    finally:
        release.set()
        send.join(30)
    assert answers == {"batch": 200}


def test_the_stop_counts_again_what_batches_mixing_both_sides_of_it_rounded(client, auth):
    # Taking the later outcomes back by subtraction left what one batch's sum had rounded away, or a
    # remainder of the totals' own rounding that made a user with nothing before the stop converted.
    shop, editor, analyst = auth("storefront"), auth("editor"), auth("analyst")
    running(client, editor, ab_definition())
    now = time.time()
    for user in ("a", "b", "c"):
        assign(client, shop, "points-q4", user, timestamp=iso(now - 5 * DAY))
    batches = [
        [("a1", "a", 1e-5, now - DAY), ("a2", "a", 1e12, now + DAY)],  # a: 1e-5 before the stop, one batch
        [("b1", "b", 1e-5, now - DAY)], [("b2", "b", -1e-5, now - DAY), ("b3", "b", 1e12, now + DAY)],  # b: 0 before it
        [("c1", "c", 1e12, now + DAY)], [("c2", "c", 1e-5, now + DAY)], [("c3", "c", 1e-9, now + DAY)], [("c4", "c", 1e-9, now + DAY)],
    ]
    for batch in batches:
        post_ok(client, "/v1/outcomes", {"outcomes": [_outcome(o, u, "conversion", v, t) for o, u, v, t in batch]}, shop)
    post_ok(client, "/v1/experiments/points-q4/stop", None, editor)
    rows = {r["arm"]: r for r in get_ok(client, "/v1/experiments/points-q4/results?metric=conversion", analyst)["arms"]}
    assert sum(r["total"] for r in rows.values()) == 1  # a alone converted before the stop


def test_a_users_value_is_the_same_whether_the_stop_counted_it_again_or_their_batches_added_it(client, auth):
    # Batches had added each one's sum rounded once, where the stop counts exactly: two users with the
    # same outcomes before the stop, one of them with a later one too, had ended on either side of 0.
    shop, editor, analyst = auth("storefront"), auth("editor"), auth("analyst")
    running(client, editor, ab_definition())
    now = time.time()
    batches = {"up": [[1e12, 1e-5], [-1e12]], "down": [[1e12, 7e-5], [-1e12, -5e-5], [-3e-5]]}  # exactly 1e-5 and -1e-5
    for name, sent in batches.items():
        for user in (f"{name}-plain", f"{name}-later"):
            assign(client, shop, "points-q4", user, timestamp=iso(now - 5 * DAY))
            for b, values in enumerate(sent):
                outcomes = [_outcome(f"{user}-{b}-{i}", user, "conversion", v, now - DAY) for i, v in enumerate(values)]
                post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
        post_ok(client, "/v1/outcomes", {"outcomes": [_outcome(f"{name}-after", f"{name}-later", "conversion", 1, now + DAY)]}, shop)
    assert _totals(client, analyst, "conversion") == 3  # the "up" pair, and "down-later" by its later outcome, counted yet
    post_ok(client, "/v1/experiments/points-q4/stop", None, editor)
    assert _totals(client, analyst, "conversion") == 2  # both "up" users, neither "down" one
