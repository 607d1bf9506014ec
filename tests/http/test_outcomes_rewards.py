"""Outcomes and rewards through HTTP: idempotency, exact counts under concurrency, schedules."""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from service.store.rewards import AFTER_THE_STOP
from service.store.tables import BanditArmStatsRow, ExposureRow, UserMetricTotalRow
from service.usecases import rewards as reward_usecases
from tests.experiment_helpers import ab_definition, assign, bandit_definition, running
from tests.helpers import before_first, get_ok, iso, post_ok

DAY = 86_400


def outcome(i: int, user: str, metric: str = "conversion", value: float = 1, key: str = "points-q4") -> dict:
    return {"outcome_id": f"o-{i}", "experiment": key, "user_id": user, "metric": metric, "value": value, "timestamp": "2026-11-22T10:00:00Z"}


def test_outcomes_count_accepted_duplicates_and_ignored(client, auth, db):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    assign(client, shop, "points-q4", "u1")
    batch = [outcome(1, "u1"), outcome(2, "u1", "spend", 12.5), outcome(1, "u1"), outcome(3, "stranger")]
    assert post_ok(client, "/v1/outcomes", {"outcomes": batch}, shop) == {"accepted": 2, "duplicates": 1, "ignored": 1}
    assert post_ok(client, "/v1/outcomes", {"outcomes": batch}, shop) == {"accepted": 0, "duplicates": 3, "ignored": 1}
    with db.read() as session:
        totals = {(r.metric, r.user_id): r.total for r in session.scalars(select(UserMetricTotalRow))}
    assert totals == {("conversion", "u1"): 1.0, ("spend", "u1"): 12.5}


def test_an_outcome_id_already_stored_is_a_duplicate_even_for_a_user_never_exposed(client, auth, db):
    # Counted as ignored, it told the storefront to send the outcome again after an exposure, under an id
    # that can never be stored.
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    running(client, auth("editor"), ab_definition(key="other"))
    assign(client, shop, "points-q4", "u1")
    assert post_ok(client, "/v1/outcomes", {"outcomes": [outcome(1, "u1", "spend", 5)]}, shop) == {"accepted": 1, "duplicates": 0, "ignored": 0}
    reused = [outcome(1, "stranger", "spend", 7), outcome(1, "stranger", "spend", 7, key="other"), outcome(2, "stranger"), outcome(2, "stranger")]
    assert post_ok(client, "/v1/outcomes", {"outcomes": reused}, shop) == {"accepted": 0, "duplicates": 3, "ignored": 1}
    with db.read() as session:
        totals = {(r.experiment_key, r.metric, r.user_id): r.total for r in session.scalars(select(UserMetricTotalRow))}
    assert totals == {("points-q4", "spend", "u1"): 5.0}


def test_a_bad_outcome_refuses_the_whole_batch(client, auth, db):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    assign(client, shop, "points-q4", "u1")
    batch = [outcome(1, "u1"), outcome(2, "u1", "nope"), outcome(3, "u1", key="missing"), {**outcome(4, "u1"), "value": "1"}]
    resp = client.post("/v1/outcomes", json={"outcomes": batch[:3]}, headers=shop)
    assert resp.status_code == 422
    assert [(d["index"], d["field"]) for d in resp.get_json()["error"]["details"]] == [(1, "outcomes.1.metric"), (2, "outcomes.2.experiment")]
    assert client.post("/v1/outcomes", json={"outcomes": batch[3:]}, headers=shop).status_code == 422
    assert client.post("/v1/outcomes", json={"outcomes": [outcome(i, "u1") for i in range(10_001)]}, headers=shop).status_code == 413
    # The reason names the metrics the experiment reports, or says it reports none.
    messages = [d["message"] for d in resp.get_json()["error"]["details"]]
    assert messages[0].startswith("'nope' is not a metric of this experiment (reported metrics: ")
    running(client, auth("editor"), ab_definition(key="no-reported", metrics=[], primary_metric="purchase_conversion"))
    assign(client, shop, "no-reported", "u1")
    none = client.post("/v1/outcomes", json={"outcomes": [outcome(5, "u1", "nope", key="no-reported")]}, headers=shop).get_json()
    assert none["error"]["details"][0]["message"] == "'nope' is not a metric of this experiment, which declares no reported metrics"
    with db.read() as session:
        assert session.scalars(select(UserMetricTotalRow)).all() == []


def test_a_batchs_values_for_a_user_add_up_exactly_whatever_the_order_of_their_ids(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    values = (1e12, -1e12, 1e-5)  # a running sum gives 1e-5 or 0 depending on which comes last
    outcomes = []
    for user, ids in (("x", "abc"), ("y", "cba")):
        assign(client, shop, "points-q4", user)
        for metric in ("conversion", "spend"):
            outcomes += [{"outcome_id": f"{user}-{metric}-{i}", "experiment": "points-q4", "user_id": user, "metric": metric, "value": v} for i, v in zip(ids, values)]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    for metric, per_user in (("conversion", 1), ("spend", 1e-5)):
        body = get_ok(client, f"/v1/experiments/points-q4/results?metric={metric}", auth("analyst"))
        assert sum(a["total"] for a in body["arms"]) == pytest.approx(2 * per_user, rel=1e-12)


def test_concurrent_outcomes_on_one_bandit_lose_no_update(app, auth, db):
    client = app.test_client()
    shop = auth("storefront")
    running(client, auth("editor"), bandit_definition(metrics=[{"key": "conversion", "kind": "binary"}, {"key": "spend", "kind": "continuous"}]))
    users = [f"u{i}" for i in range(60)]
    arms = {u: assign(client, shop, "bonus-bandit", u)["arm"] for u in users}
    # Every user converts twice (counted once) from many threads, with replays of the same ids.
    batches = [[outcome(1000 * t + i, u, key="bonus-bandit") for i, u in enumerate(users)] for t in range(2)]
    work = [b for b in batches for _ in range(5)]

    def send(batch: list) -> dict:
        return app.test_client().post("/v1/outcomes", json={"outcomes": batch}, headers=shop).get_json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, work))
    assert sum(a["accepted"] for a in answers) == 120
    assert sum(a["duplicates"] for a in answers) == 480
    with db.read() as session:
        stats = {r.arm: r for r in session.scalars(select(BanditArmStatsRow))}
    for arm, row in stats.items():
        expected = sum(1 for a in arms.values() if a == arm)
        assert (row.pulls, row.reward_sum, row.reward_sumsq) == (expected, expected, expected)


def test_a_reward_that_rounding_swallows_is_still_the_users_value_before(client, auth, db):
    """1e-9, then 1e12: the new total minus the change is 0, not 1e-9; the user must not become a second rewarded user."""
    shop = auth("storefront")
    metrics = [{"key": "conversion", "kind": "binary"}, {"key": "spend", "kind": "continuous"}]
    running(client, auth("editor"), bandit_definition(metrics=metrics, primary_metric="spend"))
    arm = assign(client, shop, "bonus-bandit", "u1")["arm"]
    for i, value in enumerate([1e-9, 1e12, 1e12, 1e12]):
        post_ok(client, "/v1/outcomes", {"outcomes": [outcome(i, "u1", "spend", value, key="bonus-bandit")]}, shop)
    with db.read() as session:
        row = session.scalars(select(BanditArmStatsRow).where(BanditArmStatsRow.arm == arm)).one()
    assert (row.pulls, row.reward_count, row.reward_m2) == (1, 1, 0.0)
    assert row.reward_sum == 3e12 + 1e-9


def test_bandit_learns_the_best_arm_over_http(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), bandit_definition())
    rates = {"arm0": 0.05, "arm1": 0.10, "arm2": 0.20}
    rng = np.random.default_rng(5)
    late = []
    for i in range(2000):
        arm = assign(client, shop, "bonus-bandit", f"user-{i}")["arm"]
        if i >= 1500:
            late.append(arm)
        if rng.random() < rates[arm]:
            post_ok(client, "/v1/outcomes", {"outcomes": [outcome(i, f"user-{i}", key="bonus-bandit")]}, shop)
    share = late.count("arm2") / len(late)
    print(f"best arm share of the last {len(late)} new users: {share:.3f}")
    assert share > 0.6, share


def reward(client, shop, action_id: str, user: str, ts: str, key: str = "points-q4", **extra) -> dict:
    return post_ok(client, "/v1/rewards", {"action_id": action_id, "user_id": user, "experiment": key, "timestamp": ts, **extra}, shop)


def _user_in(client, shop, key: str, arm: str, **params: str) -> str:
    return next(f"u{i}" for i in range(10_000) if assign(client, shop, key, f"u{i}", **params)["arm"] == arm)


def test_fixed_ratio_rewards_every_fifth_purchase_and_replays_change_nothing(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    user = _user_in(client, shop, "points-q4", "every5")
    answers = [reward(client, shop, f"a{i}", user, "2026-11-22T10:00:00Z", value=20.0) for i in range(1, 11)]
    assert [a["rewarded"] for a in answers] == [i % 5 == 0 for i in range(1, 11)]
    assert answers[-1]["balance"] == 200 and answers[-1]["sequence"] == 10
    replay = reward(client, shop, "a5", user, "2026-11-22T10:00:00Z", value=20.0)
    assert replay == {**answers[4], "duplicate": True}
    ledger = get_ok(client, f"/v1/experiments/points-q4/users/{user}/rewards", shop)
    assert ledger["balance"] == 200 and ledger["actions"] == 10 and len(ledger["history"]) == 10


def test_per_unit_and_non_qualifying_actions(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    user = _user_in(client, shop, "points-q4", "control")
    assert reward(client, shop, "p1", user, "2026-11-22T10:00:00Z", value=25.0)["points"] == 25
    visit = reward(client, shop, "v1", user, "2026-11-22T10:00:00Z", action="visit")
    assert not visit["rewarded"] and "qualifying" in visit["reason"] and visit["balance"] == 25


def test_interval_schedule_honours_injected_time(client, auth):
    shop = auth("storefront")
    arms = [{"key": "weekly", "schedule": {"type": "fixed_interval", "seconds": 7 * DAY, "points": 100}}, {"key": "other"}]
    running(client, auth("editor"), {**ab_definition(key="weekly"), "arms": arms})
    user = _user_in(client, shop, "weekly", "weekly", timestamp="2026-11-01T00:00:00Z")
    again = assign(client, shop, "weekly", user, timestamp="2026-11-05T00:00:00Z")
    assert again["exposed_at"] == "2026-11-01T00:00:00Z"  # the first exposure stands
    times = ["2026-11-07T23:59:59Z", "2026-11-08T00:00:00Z", "2026-11-10T00:00:00Z", "2026-11-15T00:00:00Z"]
    got = [reward(client, shop, f"w{i}", user, ts, key="weekly")["rewarded"] for i, ts in enumerate(times)]
    assert got == [False, True, False, True]


def test_a_weekly_bonus_is_due_exactly_a_week_after_the_exposed_at_the_server_answered(client, auth, monkeypatch):
    # The server picks the exposure's time here; stored unrounded, it lay up to half a microsecond
    # after the `exposed_at` it showed, and an action sent at exactly that plus a week was early.
    # The actions arrive a week and a day later (an action dated ahead of the clock happens when it arrives).
    monkeypatch.setattr(reward_usecases, "server_time", lambda: time.time() + 8 * DAY)
    shop = auth("storefront")
    arms = [{"key": key, "schedule": {"type": "fixed_interval", "seconds": 7 * DAY, "points": 100}} for key in ("weekly", "weekly-too")]
    running(client, auth("editor"), {**ab_definition(key="weekly"), "arms": arms})
    for i in range(40):
        exposed = datetime.fromisoformat(assign(client, shop, "weekly", f"w{i}")["exposed_at"].replace("Z", "+00:00"))
        due = datetime.fromtimestamp(exposed.timestamp() + 7 * DAY, timezone.utc).isoformat().replace("+00:00", "Z")
        assert reward(client, shop, f"a{i}", f"w{i}", due, key="weekly")["rewarded"] is True, (exposed, due)


def test_an_action_dated_ahead_happens_when_it_arrives_and_holds_no_later_reward_back(client, auth):
    shop = auth("storefront")
    window = {"factor": 2, "start": iso(time.time() + DAY), "end": iso(time.time() + 8 * DAY)}
    arms = [{"key": "hourly", "schedule": {"type": "fixed_interval", "seconds": 3600, "points": 100, "multiplier": window}}, {"key": "other"}]
    running(client, auth("editor"), {**ab_definition(key="hourly"), "arms": arms})
    user = _user_in(client, shop, "hourly", "hourly", timestamp="2026-11-01T00:00:00Z")
    sent = time.time()
    century = reward(client, shop, "f1", user, iso(time.time() + 99 * 365 * DAY), key="hourly")
    # Rewarded at its arrival, and recorded so: the multiplier week ahead was not claimed early.
    assert (century["rewarded"], century["points"]) == (True, 100)
    assert sent - 1 <= datetime.fromisoformat(century["timestamp"].replace("Z", "+00:00")).timestamp() <= time.time() + 1
    later = reward(client, shop, "f2", user, iso(time.time() + 2 * 3600), key="hourly")  # also ahead: it happens now
    assert later["rewarded"] is False and 3500 <= float(later["reason"].split(" s ")[0]) <= 3600
    # An exposure dated ahead starts the first wait at the user's first action instead.
    far = iso(time.time() + 50 * 365 * DAY)
    ahead = next(f"v{i}" for i in range(10_000) if assign(client, shop, "hourly", f"v{i}", timestamp=far)["arm"] == "hourly")
    first = reward(client, shop, "g1", ahead, iso(time.time()), key="hourly")
    assert first["rewarded"] is False and 3500 <= float(first["reason"].split(" s ")[0]) <= 3601  # the wait runs from its arrival
    # A late report dated before a user's exposure leaves the first wait as it was.
    late = next(f"l{i}" for i in range(10_000) if assign(client, shop, "hourly", f"l{i}")["arm"] == "hourly")
    assert reward(client, shop, "l1", late, "2020-01-01T00:00:00Z", key="hourly")["rewarded"] is False
    after = post_ok(client, "/v1/rewards", {"action_id": "l2", "user_id": late, "experiment": "hourly"}, shop)
    assert after["rewarded"] is False and 3500 <= float(after["reason"].split(" s ")[0]) <= 3600
    ledger = get_ok(client, f"/v1/experiments/hourly/users/{user}/rewards", shop)
    assert [(e["action_id"], e["timestamp"]) for e in ledger["history"]] == [("f1", century["timestamp"]), ("f2", later["timestamp"])]


def test_rewards_for_users_not_enrolled_get_a_clear_answer(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    answer = reward(client, shop, "x1", "never-assigned", "2026-11-22T10:00:00Z")
    assert answer["enrolled"] is False and answer["arm"] is None and answer["points"] == 0 and "not_exposed" in answer["reason"]
    assert answer["recorded"] is False
    resp = client.post("/v1/rewards", json={"action_id": "x2", "user_id": "u", "experiment": "missing"}, headers=shop)
    assert resp.status_code == 404
    # Nothing was stored, so the action_id is still free: the checkout that raced the user's first
    # assignment earns its points when it is sent again after it.
    arm = assign(client, shop, "points-q4", "never-assigned", timestamp="2026-11-22T09:00:00Z")["arm"]
    again = reward(client, shop, "x1", "never-assigned", "2026-11-22T10:00:00Z")
    assert (again["arm"], again["enrolled"], again["duplicate"], again["recorded"], again["sequence"]) == (arm, True, False, True, 1)
    assert [h["action_id"] for h in get_ok(client, "/v1/experiments/points-q4/users/never-assigned/rewards", shop)["history"]] == ["x1"]
    resp = client.post("/v1/rewards", json={"action_id": "x1", "user_id": "someone-else", "experiment": "points-q4"}, headers=shop)
    assert resp.status_code == 409


def test_an_id_names_one_entry_across_experiments_so_one_order_needs_an_id_for_each(client, auth):
    shop = auth("storefront")
    for key in ("points-q4", "summer"):
        running(client, auth("editor"), ab_definition(key=key))
        assign(client, shop, key, "u1", timestamp="2026-11-22T09:00:00Z")
    outcome = {"outcome_id": "order-1", "user_id": "u1", "metric": "spend", "value": 25, "timestamp": "2026-11-22T10:00:00Z"}
    assert post_ok(client, "/v1/outcomes", {"outcomes": [{**outcome, "experiment": "points-q4"}]}, shop)["accepted"] == 1
    assert post_ok(client, "/v1/outcomes", {"outcomes": [{**outcome, "experiment": "summer"}]}, shop)["duplicates"] == 1
    assert reward(client, shop, "order-1", "u1", "2026-11-22T10:00:00Z", value=25)["recorded"] is True
    resp = client.post("/v1/rewards", json={"action_id": "order-1", "user_id": "u1", "experiment": "summer", "value": 25}, headers=shop)
    assert resp.status_code == 409 and "already used for another user or experiment" in resp.get_json()["error"]["message"]
    assert reward(client, shop, "order-1/summer", "u1", "2026-11-22T10:00:00Z", key="summer", value=25)["recorded"] is True
    assert post_ok(client, "/v1/outcomes", {"outcomes": [{**outcome, "outcome_id": "order-1/summer", "experiment": "summer"}]}, shop)["accepted"] == 1
    documented = get_ok(client, "/openapi.json", {})["paths"]["/v1/rewards"]["post"]["responses"]["409"]["description"]
    assert "already used for another user or experiment" in documented


def test_an_id_repeated_in_a_batch_is_stored_from_its_copy_for_an_exposed_user(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    assign(client, shop, "points-q4", "known")
    copies = [{"outcome_id": "o-9", "experiment": "points-q4", "user_id": user, "metric": "spend", "value": value} for user, value in (("stranger", 5), ("known", 7), ("known", 9))]
    assert post_ok(client, "/v1/outcomes", {"outcomes": copies}, shop) == {"accepted": 1, "duplicates": 2, "ignored": 0}
    totals = {a["arm"]: a["total"] for a in get_ok(client, "/v1/experiments/points-q4/results?metric=spend", auth("analyst"))["arms"]}
    assert sum(totals.values()) == 7
    alone = [{**copies[0], "outcome_id": "o-10"}, {**copies[0], "outcome_id": "o-10", "value": 6}]
    assert post_ok(client, "/v1/outcomes", {"outcomes": alone}, shop) == {"accepted": 0, "duplicates": 1, "ignored": 1}


def test_a_long_ledger_is_read_in_pages_oldest_first(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    user = _user_in(client, shop, "points-q4", "every5")
    for i in range(5):
        reward(client, shop, f"p{i}", user, f"2026-11-22T10:00:0{i}Z")
    path = f"/v1/experiments/points-q4/users/{user}/rewards"
    whole = get_ok(client, path, shop)
    assert [h["action_id"] for h in whole["history"]] == [f"p{i}" for i in range(5)] and whole["next_cursor"] is None
    pages, cursor = [], None
    while True:
        page = get_ok(client, path + "?limit=2" + (f"&cursor={cursor}" if cursor else ""), shop)
        pages.append([h["action_id"] for h in page["history"]])
        assert (page["balance"], page["actions"]) == (whole["balance"], whole["actions"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [["p0", "p1"], ["p2", "p3"], ["p4"]]
    for query, field in [
        ("?cursor=abc", "query.cursor"), ("?cursor=-1", "query.cursor"), ("?cursor=" + "9" * 19, "query.cursor"), ("?limit=0", "query.limit"), ("?limit=1001", "query.limit"),
        ("?cursor=²", "query.cursor"), ("?cursor=١٢", "query.cursor"),  # digits to str.isdigit, not to int() or to this service
    ]:
        resp = client.get(path + query, headers=shop)
        assert resp.status_code == 422 and resp.get_json()["error"]["details"][0]["field"] == field, query


def test_a_ledger_names_the_arm_of_a_user_who_has_earned_nothing_yet(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    arm = assign(client, shop, "points-q4", "fresh")["arm"]
    fresh = get_ok(client, "/v1/experiments/points-q4/users/fresh/rewards", shop)
    assert (fresh["arm"], fresh["balance"], fresh["actions"], fresh["history"]) == (arm, 0.0, 0, [])
    assert get_ok(client, "/v1/experiments/points-q4/users/nobody/rewards", shop)["arm"] is None


def test_concurrent_rewards_for_one_user_apply_each_action_once(app, auth):
    client = app.test_client()
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    user = _user_in(client, shop, "points-q4", "every5")

    def send(i: int) -> dict:
        body = {"action_id": f"c{i % 20}", "user_id": user, "experiment": "points-q4", "timestamp": "2026-11-22T10:00:00Z"}
        return app.test_client().post("/v1/rewards", json=body, headers=shop).get_json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(80)))
    assert sum(not a["duplicate"] for a in answers) == 20
    ledger = get_ok(client, f"/v1/experiments/points-q4/users/{user}/rewards", shop)
    assert ledger["actions"] == 20 and ledger["balance"] == 400
    assert sorted(h["sequence"] for h in ledger["history"]) == list(range(1, 21))


def test_every_variable_ratio_reward_can_be_recomputed_from_the_ledger(client, auth):
    from experiments.schedules import draw

    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    user = _user_in(client, shop, "points-q4", "lottery")
    for i in range(80):  # the user depends on the experiment's fresh salt; 80 draws all missing has p < 2e-8
        reward(client, shop, f"l{i}", user, "2026-11-22T10:00:00Z")
    history = get_ok(client, f"/v1/experiments/points-q4/users/{user}/rewards", shop)["history"]
    assert [h["sequence"] for h in history] == list(range(1, 81))
    for entry in history:  # an auditor needs only the ledger and the published draw
        assert entry["rewarded"] == (draw("points-q4", user, entry["sequence"], "ratio") < 1 / 5)
    assert any(h["rewarded"] for h in history) and not all(h["rewarded"] for h in history)


def test_a_bandit_with_an_attribution_window_counts_a_pull_when_its_outcome_arrives_or_its_window_passes(client, auth, db):
    from datetime import datetime, timedelta, timezone

    body = bandit_definition(arms=2)
    body["bandit"]["attribution_hours"] = 24
    running(client, auth("editor"), body)
    shop = auth("storefront")

    def pulls() -> int:
        with db.read() as session:
            return int(session.scalar(select(func.sum(BanditArmStatsRow.pulls))) or 0)

    now = datetime.now(timezone.utc)
    for u in range(6):
        assign(client, shop, "bonus-bandit", f"fresh{u}")
    assert pulls() == 0  # nobody's outcome or window yet: no pull counts as a failure
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"w{u}", "experiment": "bonus-bandit", "user_id": f"fresh{u}", "metric": "conversion"} for u in range(2)]}, shop)
    assert pulls() == 2
    with db.read() as session:
        assert int(session.scalar(select(func.sum(BanditArmStatsRow.reward_sum)))) == 2
    old = (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for u in range(3):
        assign(client, shop, "bonus-bandit", f"old{u}", timestamp=old)
    # The next assignment matures every pull whose 24 hours have passed: the three old users, as failures.
    assign(client, shop, "bonus-bandit", "later")
    assert pulls() == 5
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": "late", "experiment": "bonus-bandit", "user_id": "old0", "metric": "conversion"}]}, shop)
    assert pulls() == 5  # counted once, when its window passed; the late conversion still counts
    assign(client, shop, "bonus-bandit", "from-the-future", timestamp="2120-01-01T00:00:00Z")
    assert pulls() == 5  # windows close by the server's clock, not by a client's timestamp
    with db.read() as session:
        assert int(session.scalar(select(func.sum(BanditArmStatsRow.reward_sum)))) == 3


def test_outcome_batches_race_maturing_assignments_without_a_deadlock(app, auth, db):
    # Outcome batches and maturation both move waiting pulls to counted and add to the arms; on
    # PostgreSQL they used to lock the arms in orders of their own and deadlock (503).
    body = bandit_definition(arms=3)
    body["bandit"]["attribution_hours"] = 1
    running(app.test_client(), auth("editor"), body)
    shop = auth("storefront")
    now, exposed, lock = time.time(), [], threading.Lock()

    def ask(i: int) -> int:
        when = datetime.fromtimestamp(now - random.Random(i).uniform(0, 7200), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        reply = app.test_client().get(f"/v1/experiments/bonus-bandit/assignment?user_id=r{i}&timestamp={when}", headers=shop)
        if reply.status_code == 200 and reply.get_json()["enrolled"]:
            with lock:
                exposed.append(f"r{i}")
        return reply.status_code

    def report(b: int) -> int:
        with lock:
            users = random.Random(b).sample(exposed, min(20, len(exposed)))
        batch = [{"outcome_id": f"race-{b}-{u}", "experiment": "bonus-bandit", "user_id": u, "metric": "conversion"} for u in users]
        return app.test_client().post("/v1/outcomes", json={"outcomes": batch}, headers=shop).status_code if batch else 200

    with ThreadPoolExecutor(8) as pool:
        asked = list(pool.map(ask, range(100)))
        statuses = list(pool.map(lambda k: ask(100 + k) if k % 3 else report(k), range(600)))
    assert set(asked) == set(statuses) == {200}
    with db.read() as session:
        counted = session.scalar(select(func.count()).select_from(ExposureRow).where(ExposureRow.counted))
        assert session.scalar(select(func.sum(BanditArmStatsRow.pulls))) == counted


def test_an_action_with_a_negative_value_is_a_return_and_counts_for_no_schedule(client, auth):
    shop = auth("storefront")
    arms = [{"key": "every", "weight": 1, "schedule": {"type": "fixed_ratio", "every": 1, "points": 10}}, {"key": "other", "weight": 0.000001}]
    running(client, auth("editor"), {**ab_definition(key="orders"), "arms": arms})
    assert assign(client, shop, "orders", "buyer")["arm"] == "every"
    refund = reward(client, shop, "r-1", "buyer", "2026-11-22T10:00:00Z", key="orders", value=-5)
    assert (refund["rewarded"], refund["points"], refund["sequence"]) == (False, 0, 0) and "return" in refund["reason"]
    order = reward(client, shop, "o-1", "buyer", "2026-11-22T11:00:00Z", key="orders", value=5)
    assert (order["rewarded"], order["points"], order["sequence"], order["balance"]) == (True, 10, 1, 10)


def test_an_action_after_the_stop_is_recorded_under_the_users_arm_and_earns_nothing(client, auth):
    shop, editor = auth("storefront"), auth("editor")
    running(client, editor, ab_definition())
    arm = assign(client, shop, "points-q4", "u-late")["arm"]
    post_ok(client, "/v1/experiments/points-q4/stop", None, editor)
    answer = reward(client, shop, "late-1", "u-late", "2026-11-22T10:00:00Z")
    assert (answer["recorded"], answer["arm"], answer["points"], answer["rewarded"]) == (True, arm, 0, False)
    assert answer["reason"].startswith("not_running")
    assert reward(client, shop, "late-1", "u-late", "2026-11-22T10:00:00Z")["duplicate"] is True
    ledger = get_ok(client, "/v1/experiments/points-q4/users/u-late/rewards", shop)
    assert ledger["arm"] == arm and [h["arm"] for h in ledger["history"]] == [arm]


EVERY_ACTION = [{"key": k, "schedule": {"type": "fixed_ratio", "every": 1, "points": 10}} for k in ("a", "b")]


def test_an_action_that_read_the_experiment_running_and_meets_the_stop_before_its_lock_earns_nothing(client, auth, db):
    # The action reads the status as it arrives; the stop commits before the action takes its user's lock
    # (on SQLite, before its write transaction begins: that holds every other writer back).
    trigger = "BEGIN IMMEDIATE" if db.is_sqlite else "INSERT INTO reward_states"
    shop, editor = auth("storefront"), auth("editor")
    running(client, editor, ab_definition(arms=EVERY_ACTION))
    assign(client, shop, "points-q4", "u-late")
    def stop() -> None:
        post_ok(client, "/v1/experiments/points-q4/stop", None, editor)

    with before_first(trigger, stop) as stopped:
        late = reward(client, shop, "late-1", "u-late", iso(time.time()))
    assert stopped and (late["points"], late["reason"]) == (0, AFTER_THE_STOP)


def test_a_stop_waits_for_the_reward_action_being_written_and_the_next_one_reads_the_stop(client, auth):
    shop, editor = auth("storefront"), auth("editor")
    running(client, editor, ab_definition(arms=EVERY_ACTION))
    assign(client, shop, "points-q4", "u-mid")
    stopped: list[float] = []

    def stop() -> None:
        post_ok(client, "/v1/experiments/points-q4/stop", None, editor)
        stopped.append(time.time())

    stopper = threading.Thread(target=stop)

    def stop_while_writing() -> None:
        # The action has read the experiment running and holds its user's state when the stop begins:
        # the stop waits for the action to commit, and the next action reads the stop.
        stopper.start()
        time.sleep(0.5)

    committing: list[float] = []  # when the action's transaction, the one holding its ledger row, began to commit

    def note_commit(conn: Any) -> None:
        if written and not committing and threading.current_thread() is threading.main_thread():
            committing.append(time.time())

    # Timed at the commit itself, not when the response is back: the stop, released by that commit, can finish first.
    with before_first("INSERT INTO reward_ledger", stop_while_writing) as written:
        event.listen(Engine, "commit", note_commit)
        try:
            first = reward(client, shop, "mid-1", "u-mid", iso(time.time()))
        finally:
            event.remove(Engine, "commit", note_commit)
    stopper.join(30)
    assert first["points"] == 10 and stopped and committing and stopped[0] >= committing[0]
    late = reward(client, shop, "mid-2", "u-mid", iso(time.time()))
    assert (late["points"], late["reason"]) == (0, AFTER_THE_STOP)


def test_a_ledger_s_sequence_counts_qualifying_actions_and_an_action_after_the_stop_keeps_the_count(client, auth):
    shop = auth("storefront")
    every2 = {"type": "fixed_ratio", "every": 2, "points": 10}
    running(client, auth("editor"), {"key": "pairs", "name": "Pairs", "arms": [{"key": "a", "schedule": every2}, {"key": "b", "schedule": every2}],
                                     "metrics": [{"key": "conversion"}]})
    assign(client, shop, "pairs", "u1")
    for i, action in enumerate(("purchase", "view", "purchase", "view")):
        post_ok(client, "/v1/rewards", {"action_id": f"a{i}", "user_id": "u1", "experiment": "pairs", "action": action, "value": 1}, shop)
    post_ok(client, "/v1/experiments/pairs/stop", None, auth("editor"))
    post_ok(client, "/v1/rewards", {"action_id": "late", "user_id": "u1", "experiment": "pairs", "action": "purchase", "value": 1}, shop)
    history = get_ok(client, "/v1/experiments/pairs/users/u1/rewards", shop)["history"]
    assert [h["sequence"] for h in history] == [1, 1, 2, 2, 2]
    assert [h["points"] for h in history] == [0, 0, 10, 0, 0] and history[-1]["balance"] == 10
