"""Results v2 through HTTP, each figure against a reference computed here from raw per-user data."""
from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timezone
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats.power import sequential_users_per_arm

from tests.experiment_helpers import ab_definition, assign, bandit_definition, running
from tests.helpers import get_ok, iso, post_ok

DAY = 86_400.0
REL = 1e-9


def welch(y_c: np.ndarray, y_t: np.ndarray, alpha: float) -> tuple[float, float, float, list[float]]:
    """(diff, se, p, diff_ci) of Welch's test, from scipy."""
    test = sps.ttest_ind(y_t, y_c, equal_var=False)
    vc, vt = y_c.var(ddof=1) / len(y_c), y_t.var(ddof=1) / len(y_t)
    se = math.sqrt(vc + vt)
    df = (vc + vt) ** 2 / (vc**2 / (len(y_c) - 1) + vt**2 / (len(y_t) - 1))
    q = sps.t.isf(alpha / 2, df)
    diff = y_t.mean() - y_c.mean()
    return diff, se, float(test.pvalue), [diff - q * se, diff + q * se]


@pytest.fixture
def shoppers(client, auth):
    """An A/B test whose users bought before and after exposure: revenue per user, and the same over the 14 days before."""
    running(client, auth("editor"), ab_definition(weights=(1, 1, 1), guardrails=["revenue"]))
    shop = auth("storefront")
    rng = np.random.default_rng(21)
    now = datetime.now(timezone.utc).timestamp()
    users, events = {}, []
    for u in range(240):
        user = f"c{u}"
        exposed = now - rng.uniform(2, 20) * DAY
        arm = assign(client, shop, "points-q4", user, timestamp=iso(exposed))["arm"]
        habit = rng.gamma(2.0, 15.0)  # how much this user spends: it drives both periods, so CUPED has something to remove
        pre = post = 0.0
        for k in range(int(rng.integers(0, 5))):
            value = round(float(habit * rng.uniform(0.5, 1.5)), 2)
            ts = exposed - rng.uniform(0.01, 20) * DAY  # some before the 14-day window: they must not count
            events.append({"event_id": f"b-{u}-{k}", "user_id": user, "item_id": "i1", "type": "purchase", "value": value, "timestamp": iso(ts)})
            pre += value if ts >= exposed - 14 * DAY else 0.0
        for k in range(int(rng.integers(0, 5))):
            value = round(float(habit * rng.uniform(0.5, 1.5) * (1.3 if arm == "every5" else 1.0)), 2)
            ts = exposed + rng.uniform(0.0, 1.5) * DAY
            if ts < now:
                events.append({"event_id": f"a-{u}-{k}", "user_id": user, "item_id": "i2", "type": "purchase", "value": value, "timestamp": iso(ts)})
                post += value
        users[user] = (arm, pre, post)
    post_ok(client, "/v1/events", {"events": events}, shop)
    return users


def _by_arm(users, arm):
    rows = [(pre, post) for a, pre, post in users.values() if a == arm]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def test_cuped_on_revenue_matches_numpy(client, auth, shoppers):
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=revenue", auth("analyst"))
    x = np.array([pre for _, pre, _ in shoppers.values()])
    y = np.array([post for _, _, post in shoppers.values()])
    theta = float(np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2))
    adjusted = {a: y_a - theta * (x_a - x.mean()) for a in ("control", "every5", "lottery") for x_a, y_a in [_by_arm(shoppers, a)]}
    y_all = y - theta * (x - x.mean())
    assert body["test"].endswith("_cuped")
    assert body["cuped"]["theta"] == pytest.approx(theta, rel=REL)
    assert body["cuped"]["days"] == 14
    assert body["cuped"]["variance_reduction"] == pytest.approx(1 - y_all.var() / y.var(), rel=REL)
    rows = {r["arm"]: r for r in body["arms"]}
    for arm in ("every5", "lottery"):
        diff, _, p, ci = welch(adjusted["control"], adjusted[arm], 0.05)
        assert rows[arm]["diff"] == pytest.approx(diff, rel=REL)
        assert rows[arm]["p_value"] == pytest.approx(p, rel=1e-7)
        assert rows[arm]["diff_ci"] == pytest.approx(ci, rel=REL)
        assert rows[arm]["mean"] == pytest.approx(adjusted[arm].mean(), rel=REL)
    off = get_ok(client, "/v1/experiments/points-q4/results?metric=revenue&cuped=false", auth("analyst"))
    assert off["cuped"] is None and off["test"] == "welch_t"
    raw_c, raw_t = _by_arm(shoppers, "control")[1], _by_arm(shoppers, "every5")[1]
    assert {r["arm"]: r for r in off["arms"]}["every5"]["p_value"] == pytest.approx(welch(raw_c, raw_t, 0.05)[2], rel=1e-7)


def test_cuped_on_revenue_far_from_zero_keeps_every_digit_a_double_can(client, auth):
    # Purchases of 1e11 and a spread of one: each arm's means had reached CUPED as rounded doubles (an ulp
    # of 1e11 is 1.5e-5), so theta lost 7 digits and the p-value its fourth. The reference is exact
    # arithmetic on the values sent, moved near zero only to hand scipy numbers it can sum.
    offset = 1e11
    running(client, auth("editor"), ab_definition())
    shop = auth("storefront")
    rng = np.random.default_rng(5)
    now = datetime.now(timezone.utc).timestamp()
    users: dict[str, tuple[str, float, float]] = {}
    events = []
    for u in range(90):
        user, exposed = f"f{u}", now - 3 * DAY
        arm = assign(client, shop, "points-q4", user, timestamp=iso(exposed))["arm"]
        habit = float(rng.normal())
        x, y = offset + habit, offset + 0.5 * habit + float(rng.normal()) + (0.3 if arm == "every5" else 0.0)
        events += [{"event_id": f"fx{u}", "user_id": user, "item_id": "i1", "type": "purchase", "value": x, "timestamp": iso(exposed - DAY)},
                   {"event_id": f"fy{u}", "user_id": user, "item_id": "i1", "type": "purchase", "value": y, "timestamp": iso(exposed + DAY)}]
        users[user] = (arm, x, y)
    post_ok(client, "/v1/events", {"events": events}, shop)
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=revenue", auth("analyst"))
    exact = [(arm, Fraction(x), Fraction(y)) for arm, x, y in users.values()]
    mx, my = sum(x for _, x, _ in exact) / len(exact), sum(y for _, _, y in exact) / len(exact)
    theta = sum((x - mx) * (y - my) for _, x, y in exact) / sum((x - mx) ** 2 for _, x, _ in exact)
    adjusted = {a: np.array([float(y - theta * (x - mx) - Fraction(offset)) for arm, x, y in exact if arm == a]) for a in ("control", "every5", "lottery")}
    assert body["test"] == "welch_t_cuped" and body["cuped"]["theta"] == pytest.approx(float(theta), rel=1e-12)
    rows = {r["arm"]: r for r in body["arms"]}
    for arm in ("every5", "lottery"):
        diff, _, p, ci = welch(adjusted["control"], adjusted[arm], 0.05)
        assert rows[arm]["diff"] == pytest.approx(diff, rel=1e-10, abs=1e-12)
        assert rows[arm]["p_value"] == pytest.approx(p, rel=1e-9)
        assert rows[arm]["diff_ci"] == pytest.approx(ci, rel=1e-10, abs=1e-12)


def test_one_extreme_purchase_turns_cuped_off_with_a_note_instead_of_wrecking_every_arm(client, auth, shoppers):
    shop = auth("storefront")
    now = datetime.now(timezone.utc).timestamp()
    arms = {}
    for k in range(100):  # users until one lands in the lottery arm; those before spend nothing
        arms[f"w{k}"] = assign(client, shop, "points-q4", f"w{k}", timestamp=iso(now - 3 * DAY))["arm"]
        if arms[f"w{k}"] == "lottery":
            whale = f"w{k}"
            break
    events = [
        {"event_id": "w-pre", "user_id": whale, "item_id": "i1", "type": "purchase", "value": 5_000.0, "timestamp": iso(now - 5 * DAY)},
        {"event_id": "w-post", "user_id": whale, "item_id": "i2", "type": "purchase", "value": 9.99e11, "timestamp": iso(now - 2 * DAY)},
    ]
    post_ok(client, "/v1/events", {"events": events}, shop)
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=revenue", auth("analyst"))
    off = get_ok(client, "/v1/experiments/points-q4/results?metric=revenue&cuped=false", auth("analyst"))
    assert body["cuped"] is None and body["test"] == "welch_t"
    assert any(n.startswith("CUPED skipped: theta") and "would widen an arm's standard error" in n for n in body["notes"])
    # The same figures as with CUPED off; the moments come from another query there, so to rounding.
    for skipped, plain in zip(body["arms"], off["arms"]):
        assert skipped.keys() == plain.keys() and skipped["users"] == plain["users"] and skipped["notes"] == plain["notes"]
        for field in ("mean", "ci", "diff", "diff_ci", "lift", "lift_ci", "p_value", "p_value_adjusted", "chance_to_beat_control"):
            assert skipped[field] == (pytest.approx(plain[field], rel=1e-9) if plain[field] is not None else None), field
    control = np.concatenate([_by_arm(shoppers, "control")[1], np.zeros(sum(a == "control" for a in arms.values()))])
    assert {r["arm"]: r for r in body["arms"]}["control"]["mean"] == pytest.approx(control.mean(), rel=REL)


def test_cuped_skipped_with_a_note_for_reported_metrics(client, auth, shoppers):
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=conversion", auth("analyst"))
    assert body["cuped"] is None and any("CUPED" in n for n in body["notes"])


def test_guardrails_follow_the_revenue_interval(client, auth, shoppers):
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=conversion", auth("analyst"))
    x = np.array([pre for _, pre, _ in shoppers.values()])
    y = np.array([post for _, _, post in shoppers.values()])
    theta = float(np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2))
    adjusted = {a: y_a - theta * (x_a - x.mean()) for a in ("control", "every5", "lottery") for x_a, y_a in [_by_arm(shoppers, a)]}
    assert [(g["arm"], g["metric"]) for g in body["guardrails"]] == [("every5", "revenue"), ("lottery", "revenue")]
    for g in body["guardrails"]:
        diff, _, _, ci = welch(adjusted["control"], adjusted[g["arm"]], 0.05)
        assert g["diff"] == pytest.approx(diff, rel=REL) and g["diff_ci"] == pytest.approx(ci, rel=REL)
        assert g["status"] == ("fail" if ci[1] < 0 else "warn" if diff < 0 else "ok")


def test_sequential_intervals_and_p_values_follow_the_formula(client, auth, shoppers):
    alpha, tuning = 0.05, 2000.0
    body = get_ok(client, f"/v1/experiments/points-q4/results?metric=revenue&cuped=false&sequential=true&sequential_tuning={tuning}", auth("analyst"))
    assert body["test"] == "welch_t_sequential" and body["sequential"] == {"tuning": tuning}
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    y_c = _by_arm(shoppers, "control")[1]
    for row in body["arms"][1:]:
        y_t = _by_arm(shoppers, row["arm"])[1]
        diff, se, _, _ = welch(y_c, y_t, alpha)
        n = len(y_c) + len(y_t)
        half = math.sqrt(se * se * n) * math.sqrt(2 * (n * rho**2 + 1) * math.log(math.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2)
        assert row["diff_ci"] == pytest.approx([diff - half, diff + half], rel=REL)
        assert 0 <= row["p_value"] <= 1


def test_points_per_user_and_cost_per_incremental_conversion(client, auth):
    running(client, auth("editor"), ab_definition(weights=(1, 1, 1)))
    shop = auth("storefront")
    arms, points, converted = {}, {}, {}
    for u in range(90):
        user = f"p{u}"
        arms[user] = assign(client, shop, "points-q4", user)["arm"]
        points[user] = 0.0
        for k in range(u % 4):
            reward = post_ok(client, "/v1/rewards", {"action_id": f"r-{u}-{k}", "user_id": user, "experiment": "points-q4", "value": 10.0 + k}, shop)
            points[user] += reward["points"]
        converted[user] = u % 3 == 0 or (arms[user] == "every5" and u % 2 == 0)
    outcomes = [{"outcome_id": f"o-{u}", "experiment": "points-q4", "user_id": f"p{u}", "metric": "conversion", "value": 1} for u in range(90) if converted[f"p{u}"]]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=conversion", auth("analyst"))
    ppu = {a: sum(points[u] for u in arms if arms[u] == a) / sum(1 for u in arms if arms[u] == a) for a in ("control", "every5", "lottery")}
    rate = {a: sum(converted[u] for u in arms if arms[u] == a) / sum(1 for u in arms if arms[u] == a) for a in ppu}
    rows = {r["arm"]: r for r in body["arms"]}
    for arm in ppu:
        assert rows[arm]["points_per_user"] == pytest.approx(ppu[arm], rel=REL)
        diff = rate[arm] - rate["control"]
        expected = (ppu[arm] - ppu["control"]) / diff if arm != "control" and diff > 0 else None
        assert rows[arm]["cost_per_incremental"] == (pytest.approx(expected, rel=REL) if expected is not None else None)
    # A retention metric counts only users whose day has ended (none yet); points are still over everyone exposed.
    retention = {r["arm"]: r for r in get_ok(client, "/v1/experiments/points-q4/results?metric=retention_d1", auth("analyst"))["arms"]}
    assert all(retention[a]["users"] == 0 for a in ppu)
    assert {a: retention[a]["points_per_user"] for a in ppu} == pytest.approx(ppu, rel=REL)


def test_equal_schedules_cost_0_per_extra_conversion_not_a_rounding_residue(client, auth):
    same = {"type": "per_unit", "points_per_unit": 1}
    definition = {**ab_definition(), "arms": [{"key": "control", "schedule": same}, {"key": "twin", "schedule": same}]}
    running(client, auth("editor"), definition)
    shop = auth("storefront")
    for u in range(80):
        arm = assign(client, shop, "points-q4", f"t{u}")["arm"]
        post_ok(client, "/v1/rewards", {"action_id": f"t-{u}", "user_id": f"t{u}", "experiment": "points-q4", "value": 0.1}, shop)
        if u % 5 == 0 or (arm == "twin" and u % 2 == 0):
            post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o-{u}", "experiment": "points-q4", "user_id": f"t{u}", "metric": "conversion"}]}, shop)
    twin = get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["arms"][1]
    assert twin["diff"] > 0 and twin["cost_per_incremental"] == 0.0


def test_a_control_without_a_schedule_costs_0_by_design_whatever_the_actions_sent(client, auth):
    definition = {**ab_definition(), "arms": [{"key": "control"}, {"key": "per-unit", "schedule": {"type": "per_unit", "points_per_unit": 1}}]}
    running(client, auth("editor"), definition)
    shop = auth("storefront")
    for u in range(60):  # the storefront reports actions only for users in a points programme
        if assign(client, shop, "points-q4", f"c{u}")["arm"] == "per-unit":
            post_ok(client, "/v1/rewards", {"action_id": f"c-{u}", "user_id": f"c{u}", "experiment": "points-q4", "value": 2.0}, shop)
            if u % 2 == 0:
                post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o-{u}", "experiment": "points-q4", "user_id": f"c{u}", "metric": "conversion"}]}, shop)
    control, treated = get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["arms"]
    assert control["reward_actions"] == 0 and control["points_per_user"] == 0 and not any("reward action" in n for n in control["notes"])
    assert treated["diff"] > 0 and treated["cost_per_incremental"] == pytest.approx(2.0 / treated["diff"], rel=1e-9)


@pytest.mark.parametrize("offset", [0.0, 1e6, 1e9, 1e12 - 20])
def test_values_far_from_zero_keep_their_precision(client, auth, offset):
    running(client, auth("editor"), ab_definition(weights=(1, 1, 0.000001)))
    shop = auth("storefront")
    values = {"control": [], "every5": []}
    outcomes = []
    for u in range(200):
        arm = assign(client, shop, "points-q4", f"f{u}")["arm"]
        if arm not in values:
            continue
        value = offset + (u % 10) + (1 if arm == "every5" else 0)
        values[arm].append(value)
        outcomes.append({"outcome_id": f"f-{u}", "experiment": "points-q4", "user_id": f"f{u}", "metric": "spend", "value": value})
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=spend", auth("analyst"))
    rows = {r["arm"]: r for r in body["arms"]}
    # From the values less the offset, which is exact (each is the offset plus a small whole number):
    # scipy on the raw values loses digits to the offset itself, 5e-4 of this p-value at 1e12.
    exact = {arm: np.array(vs) - offset for arm, vs in values.items()}
    expected = sps.ttest_ind(exact["every5"], exact["control"], equal_var=False).pvalue
    assert rows["every5"]["p_value"] == pytest.approx(expected, rel=1e-9)
    assert rows["every5"]["diff"] == pytest.approx(exact["every5"].mean() - exact["control"].mean(), rel=1e-12)
    assert rows["control"]["ci"][1] - rows["control"]["ci"][0] > 0


@pytest.mark.parametrize("metric", ["spend", "revenue"])
def test_means_near_1e12_with_a_tiny_spread_are_exact_to_the_last_digit_a_double_holds(client, auth, metric):
    # A plain sum of 200 values near 1e12 rounds each by up to 0.03, more than the spread here: the
    # means must come from deviations around a reference instead, and their difference from what
    # rounding each mean to a double dropped too (an ulp of 1e12 is 2 % of the difference here).
    running(client, auth("editor"), ab_definition(weights=(1, 1, 0.000001)))
    shop = auth("storefront")
    rng = np.random.default_rng(12)
    values: dict[str, list[float]] = {"control": [], "every5": []}
    outcomes, events = [], []
    for u in range(400):
        arm = assign(client, shop, "points-q4", f"t{u}")["arm"]
        if arm not in values:
            continue
        value = 1e12 - 0.02 + float(rng.uniform(0, 0.01)) + (0.005 if arm == "every5" else 0.0)
        values[arm].append(value)
        outcomes.append({"outcome_id": f"t-{u}", "experiment": "points-q4", "user_id": f"t{u}", "metric": "spend", "value": value})
        events.append({"event_id": f"t-{u}", "user_id": f"t{u}", "item_id": "sku-1", "type": "purchase", "value": value})
    if metric == "spend":
        post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    else:
        post_ok(client, "/v1/events", {"events": events}, shop)
    body = get_ok(client, f"/v1/experiments/points-q4/results?metric={metric}&cuped=false", auth("analyst"))
    rows = {r["arm"]: r for r in body["arms"]}
    ulp = math.ulp(1e12)
    exact = {arm: sum(Fraction(v) for v in vs) / len(vs) for arm, vs in values.items()}
    for arm in values:
        assert abs(Fraction(rows[arm]["mean"]) - exact[arm]) <= 2 * ulp
    exact_diff = exact["every5"] - exact["control"]
    assert abs(Fraction(rows["every5"]["diff"]) - exact_diff) <= 1e-9 * abs(exact_diff)
    # The interval's width depends on the spread alone, which deviations keep to 1e-9 or better.
    shifted = {arm: np.array(vs) - 1e12 for arm, vs in values.items()}  # exact: each value lies within 1 of 1e12
    _, _, p_value, reference_ci = welch(shifted["control"], shifted["every5"], 0.05)
    low, high = rows["every5"]["diff_ci"]
    assert high - low == pytest.approx(reference_ci[1] - reference_ci[0], rel=1e-9)
    assert low <= exact_diff <= high
    assert rows["every5"]["p_value"] == pytest.approx(p_value, rel=1e-9)
    assert rows["every5"]["lift"] == pytest.approx(float(exact_diff / exact["control"]), rel=1e-9)


def test_results_size_each_comparison_at_the_alpha_its_correction_gives_it(client, auth):
    running(client, auth("editor"), ab_definition(weights=(1, 1, 1)))
    shop = auth("storefront")
    converted = {"control": 0, "every5": 0, "lottery": 0}
    exposed = dict(converted)
    outcomes = []
    for u in range(240):
        arm = assign(client, shop, "points-q4", f"z{u}")["arm"]
        exposed[arm] += 1
        if u % 4 == 0:
            converted[arm] += 1
            outcomes.append({"outcome_id": f"z-{u}", "experiment": "points-q4", "user_id": f"z{u}", "metric": "conversion", "value": 1})
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    p1 = converted["control"] / exposed["control"]
    p2 = p1 + 0.05
    pbar = (p1 + p2) / 2
    for correction, a in (("holm", 0.05 / 2), ("none", 0.05)):
        sized = get_ok(client, f"/v1/experiments/points-q4/results?mde=0.05&correction={correction}", auth("analyst"))["sample_size"]
        n = math.ceil((sps.norm.isf(a / 2) * math.sqrt(2 * pbar * (1 - pbar)) + sps.norm.ppf(0.8) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / 0.05**2)
        assert (sized["users_per_arm"], sized["alpha"], sized["alpha_per_test"]) == (n, 0.05, pytest.approx(a, rel=1e-12))
        assert ("alpha / 2" in sized["note"]) == (correction != "none")


def test_sample_size_plans_follow_the_formulas(client, auth):
    body = post_ok(client, "/v1/plans/sample-size", {"metric_kind": "binary", "baseline": 0.1, "mde": 0.02, "alpha": 0.05, "power": 0.8, "arms": 3, "correction": "holm", "daily_users": 1000}, auth("analyst"))
    a = 0.05 / 2
    p1, p2 = 0.1, 0.12
    pbar = (p1 + p2) / 2
    n = math.ceil((sps.norm.isf(a / 2) * math.sqrt(2 * pbar * (1 - pbar)) + sps.norm.ppf(0.8) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2)
    assert body["users_per_arm"] == n and body["total_users"] == 3 * n and body["days"] == math.ceil(3 * n / 1000)
    cont = post_ok(client, "/v1/plans/sample-size", {"metric_kind": "continuous", "baseline": 50, "sd": 20, "mde": 0.1, "mde_type": "relative"}, auth("editor"))
    assert cont["users_per_arm"] == math.ceil(2 * 20**2 * (sps.norm.isf(0.025) + sps.norm.ppf(0.8)) ** 2 / 5.0**2)
    # Read with sequential intervals the same power takes more users: the sequence of each comparison, at alpha / 2 here,
    # at its users' size, sized for the default tuning (tests/experiments/test_stats_v2.py checks the size itself).
    sequential = body["sequential"]
    assert sequential == {"users_per_arm": sequential_users_per_arm(p1 * (1 - p1) + p2 * (1 - p2), 0.02, a, 0.8), "total_users": 3 * sequential["users_per_arm"],
                          "days": math.ceil(3 * sequential["users_per_arm"] / 1000), "tuning": 5000.0}
    assert sequential["users_per_arm"] > n and cont["sequential"]["days"] is None
    for bad in ({"metric_kind": "binary", "baseline": 0.99, "mde": 0.05}, {"metric_kind": "continuous", "baseline": 1, "mde": 1}):
        resp = client.post("/v1/plans/sample-size", json=bad, headers=auth("analyst"))
        assert resp.status_code == 422, resp.get_json()
    # A standard deviation whose square underflows: an effect of 1e312 standard deviations takes one user per arm.
    tiny = post_ok(client, "/v1/plans/sample-size", {"metric_kind": "continuous", "baseline": 0, "sd": 1e-300, "mde": 1e12, "daily_users": 5}, auth("analyst"))
    assert (tiny["users_per_arm"], tiny["sequential"]["users_per_arm"], tiny["days"]) == (1, 1, 1)


def test_bandit_ipw_snipw_and_offline_evaluation_match_numpy(client, auth):
    running(client, auth("editor"), bandit_definition(arms=3))
    shop = auth("storefront")
    rng = np.random.default_rng(4)
    logged = []
    for u in range(150):
        answer = assign(client, shop, "bonus-bandit", f"b{u}")
        converted = bool(rng.random() < {"arm0": 0.1, "arm1": 0.3, "arm2": 0.2}[answer["arm"]])
        if converted:
            post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"b-{u}", "experiment": "bonus-bandit", "user_id": f"b{u}", "metric": "conversion"}]}, shop)
        logged.append((answer["arm"], answer["probability"], float(converted)))
    arm = np.array([a for a, _, _ in logged])
    p = np.array([q for _, q, _ in logged])
    y = np.array([v for _, _, v in logged])
    n = len(logged)
    body = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))
    for row in body["arms"]:
        z = np.where(arm == row["arm"], y / p, 0.0)
        w = np.where(arm == row["arm"], 1 / p, 0.0)
        assert row["ipw_mean"] == pytest.approx(z.sum() / n, rel=REL)
        half = sps.norm.isf(0.025) * z.std(ddof=1) / math.sqrt(n)
        if z.any():
            assert row["ipw_ci"] == pytest.approx([z.mean() - half, z.mean() + half], rel=1e-7)
        else:  # no conversions in the arm yet: [0, 0] would claim its rate is known to be 0
            assert row["ipw_ci"] is None and row["snipw_ci"] is None and row["ipw_mean"] == 0
        if w.sum() > 0:
            assert row["snipw_mean"] == pytest.approx((w * y).sum() / w.sum(), rel=REL)
            ess = w.sum() ** 2 / (w * w).sum()  # Kish's effective sample size of the arm's weights
            assert row["ipw_effective_users"] == pytest.approx(ess, rel=REL)
            assert any("effective users" in note for note in row["notes"]) == (ess < 60)
    target = {"arm0": 0.2, "arm1": 0.5, "arm2": 0.3}
    value = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": target}, auth("analyst"))
    w = np.array([target[a] for a in arm]) / p
    assert value["ipw"]["value"] == pytest.approx((w * y).sum() / n, rel=REL)
    assert value["snipw"]["value"] == pytest.approx((w * y).sum() / w.sum(), rel=REL)
    assert value["effective_sample_size"] == pytest.approx(w.sum() ** 2 / (w * w).sum(), rel=REL)
    assert any("effective users" in note for note in value["notes"]) == (value["effective_sample_size"] < 60)
    assert value["as_run"] == pytest.approx(y.mean(), rel=REL) and value["users"] == n  # what the bandit's own allocation gave
    best = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": "best_arm"}, auth("analyst"))
    assert sorted(best["allocation"].values()) == [0.0, 0.0, 1.0]
    bad = client.post("/v1/experiments/bonus-bandit/evaluate", json={"allocation": {"arm0": 0.5, "nope": 0.5}}, headers=auth("analyst"))
    assert bad.status_code == 422
    negative = client.post("/v1/experiments/bonus-bandit/evaluate", json={"allocation": {"arm0": -1}}, headers=auth("analyst"))
    named = {d["field"] for d in negative.get_json()["error"]["details"]}
    assert negative.status_code == 422 and named and named <= {"allocation", "allocation.arm0"}
    unknown = client.post("/v1/experiments/bonus-bandit/evaluate", json={"allocation": "best_arm", "metric": "nope"}, headers=auth("analyst"))
    assert unknown.status_code == 422 and unknown.get_json()["error"]["details"][0]["field"] == "metric"  # the body's, not the query's


def test_best_arm_before_anyone_was_exposed_says_it_names_no_arm(client, auth):
    running(client, auth("editor"), bandit_definition())
    best = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": "best_arm"}, auth("analyst"))
    assert set(best["allocation"].values()) == {0.0} and best["users"] == 0 and best["as_run"] is None
    assert best["notes"][0].startswith("no arm has an estimate yet")


def test_a_continuous_bandit_far_from_zero_allocates_as_its_exact_moments_say(client, auth):
    from bandits.base import ArmStats, with_floor
    from bandits.thompson import ThompsonSampling

    body = bandit_definition(arms=2, metrics=[{"key": "spend", "kind": "continuous"}], primary_metric="spend")
    running(client, auth("editor"), body)
    shop = auth("storefront")
    values: dict[str, list[float]] = {"arm0": [], "arm1": []}
    for u in range(80):
        arm = assign(client, shop, "bonus-bandit", f"s{u}")["arm"]
        value = 1e9 + (u % 7) * 0.5 + (0.4 if arm == "arm1" else 0.0)
        values[arm].append(value)
        post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"s-{u}", "experiment": "bonus-bandit", "user_id": f"s{u}", "metric": "spend", "value": value}]}, shop)
    arrays = [np.array(values[a]) for a in ("arm0", "arm1")]
    exact = ArmStats.of([len(v) for v in arrays], [float(v.sum()) for v in arrays], [float((v * v).sum()) for v in arrays], [float(((v - v.mean()) ** 2).sum()) for v in arrays])
    expected = with_floor(ThompsonSampling(reward="continuous").probabilities(exact), 0.01)
    allocation = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))["allocation"]
    # Each mean at 1e9 is only known to about 1e-7 (the offset's rounding), which moves the allocation by ~1e-6.
    assert [allocation["arm0"], allocation["arm1"]] == pytest.approx(list(expected), abs=2e-5)


def test_a_refunded_outlier_leaves_a_bandits_moments_as_its_users_values_say(client, auth):
    """Removing 1e12 from rewards of about 50 cancels terms of 1e24: the arm's moments are counted again."""
    from bandits.base import ArmStats, with_floor
    from bandits.thompson import ThompsonSampling

    body = bandit_definition(arms=2, metrics=[{"key": "spend", "kind": "continuous"}], primary_metric="spend")
    running(client, auth("editor"), body)
    shop = auth("storefront")
    values: dict[str, dict[str, float]] = {"arm0": {}, "arm1": {}}
    for u in range(60):
        arm = assign(client, shop, "bonus-bandit", f"w{u}")["arm"]
        values[arm][f"w{u}"] = 50 + (u % 5) * 0.01 + (0.02 if arm == "arm1" else 0.0)
    whale = sorted(values["arm0"])[0]
    sent = {**values["arm0"], **values["arm1"], whale: 1e12}
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"w-{u}", "experiment": "bonus-bandit", "user_id": u, "metric": "spend", "value": v} for u, v in sent.items()]}, shop)
    refund = 49.56 - 1e12
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": "refund", "experiment": "bonus-bandit", "user_id": whale, "metric": "spend", "value": refund}]}, shop)
    values["arm0"][whale] = 1e12 + refund
    arrays = [np.array(list(values[a].values())) for a in ("arm0", "arm1")]
    exact = ArmStats.of([len(v) for v in arrays], [float(v.sum()) for v in arrays], [float((v * v).sum()) for v in arrays], [float(((v - v.mean()) ** 2).sum()) for v in arrays])
    expected = with_floor(ThompsonSampling(reward="continuous").probabilities(exact), 0.01)
    allocation = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))["allocation"]
    assert [allocation["arm0"], allocation["arm1"]] == pytest.approx(list(expected), abs=1e-9)


def test_refunds_among_equal_rewards_are_rounding_noise_and_scan_nothing(client, auth, monkeypatch):
    from service.store import bandit_rewards

    recounts = []
    recount = bandit_rewards._recount_moments
    monkeypatch.setattr(bandit_rewards, "_recount_moments", lambda *a: (recounts.append(a), recount(*a)))
    running(client, auth("editor"), bandit_definition(arms=2, metrics=[{"key": "spend", "kind": "continuous"}], primary_metric="spend"))
    shop = auth("storefront")
    users = [f"e{u}" for u in range(30)]
    for u in users:
        assign(client, shop, "bonus-bandit", u)
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"e-{u}", "experiment": "bonus-bandit", "user_id": u, "metric": "spend", "value": 9.99} for u in users]}, shop)
    for u in users[:8]:
        post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"r-{u}", "experiment": "bonus-bandit", "user_id": u, "metric": "spend", "value": -9.99}]}, shop)
    assert recounts == []


def _snipw_reference(p: np.ndarray, y: np.ndarray, share: float = 1.0) -> tuple[float, list[float] | None]:
    """SNIPW and its delta-method 95 % interval over one arm's users, weights share / p; no interval when every y is the same."""
    w = share / p
    mean = float((w * y).sum() / w.sum())
    half = float(sps.norm.isf(0.025) * math.sqrt((w * w * (y - mean) ** 2).sum()) / w.sum())
    return mean, [mean - half, mean + half] if np.ptp(y) > 0 else None


def test_ipw_reads_a_binary_metric_as_converted_or_not_whatever_the_values_sum_to(client, auth):
    running(client, auth("editor"), bandit_definition(arms=2))
    shop = auth("storefront")
    patterns = ([1, 1, 1], [1, -1], [0.5], [-2, 3], [], [-1])  # sums 3, 0, 0.5, 1, none, -1: converted 1, 0, 1, 1, 0, 0
    logged = []
    for u in range(60):
        answer = assign(client, shop, "bonus-bandit", f"v{u}")
        values = patterns[u % len(patterns)]
        outcomes = [{"outcome_id": f"v-{u}-{k}", "experiment": "bonus-bandit", "user_id": f"v{u}", "metric": "conversion", "value": v} for k, v in enumerate(values)]
        if outcomes:
            post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
        logged.append((answer["arm"], answer["probability"], float(sum(values) > 0)))
    arm = np.array([a for a, _, _ in logged])
    p = np.array([q for _, q, _ in logged])
    y = np.array([v for _, _, v in logged])
    body = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))
    for row in body["arms"]:
        mine = arm == row["arm"]
        assert row["ipw_mean"] == pytest.approx((y[mine] / p[mine]).sum() / len(y), rel=REL)
        assert row["snipw_mean"] == pytest.approx(_snipw_reference(p[mine], y[mine])[0], rel=REL)
        assert 0 <= row["snipw_mean"] <= 1
    table = client.get("/v1/experiments/bonus-bandit/results.csv", headers=auth("analyst")).get_data(as_text=True)
    for line, row in zip(csv.DictReader(io.StringIO(table)), body["arms"]):
        assert float(line["ipw_effective_users"]) == row["ipw_effective_users"] and line["notes"] == "; ".join(row["notes"])
    value = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": {"arm0": 1.0}}, auth("analyst"))
    mine = arm == "arm0"
    assert value["snipw"]["value"] == pytest.approx(_snipw_reference(p[mine], y[mine])[0], rel=REL)


def _spend_bandit(client, auth, values: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A running two-arm bandit on a continuous `spend`, one user a value: each user's arm, propensity and value."""
    running(client, auth("editor"), bandit_definition(arms=2, metrics=[{"key": "spend", "kind": "continuous"}], primary_metric="spend"))
    shop = auth("storefront")
    logged = []
    for u, value in enumerate(values):
        answer = assign(client, shop, "bonus-bandit", f"f{u}")
        post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"f-{u}", "experiment": "bonus-bandit", "user_id": f"f{u}", "metric": "spend", "value": value}]}, shop)
        logged.append((answer["arm"], answer["probability"], value))
    return np.array([a for a, _, _ in logged]), np.array([q for _, q, _ in logged]), np.array([v for _, _, v in logged])


@pytest.mark.parametrize("spread", [1.0, 0.0])
def test_snipw_intervals_far_from_zero_keep_their_width(client, auth, spread):
    """Weighted sums around zero at 1e9 cancel every digit of SNIPW's spread; around the arm's mean they keep it."""
    rng = np.random.default_rng(8)
    arm, p, y = _spend_bandit(client, auth, [1e9 + spread * round(float(rng.normal()), 3) for _ in range(80)])
    rows = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))["arms"]
    value = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": {"arm0": 1.0}}, auth("analyst"))
    answers = [(row["arm"], row["snipw_mean"], row["snipw_ci"]) for row in rows] + [("arm0", value["snipw"]["value"], value["snipw"]["ci"])]
    for name, mean, ci in answers:
        mine = arm == name
        expected_mean, expected_ci = _snipw_reference(p[mine], y[mine])
        assert mean == pytest.approx(expected_mean, rel=1e-15, abs=1e-6)
        if spread:
            assert expected_ci is not None
            width, expected_width = ci[1] - ci[0], expected_ci[1] - expected_ci[0]
            assert width == pytest.approx(expected_width, rel=1e-4)  # the bounds sit at 1e9: their difference keeps ~7 digits
        else:  # every value 1e9: no spread, so no interval rather than one of no width
            assert ci is None and expected_ci is None and mean == 1e9


def test_snipw_keeps_its_interval_for_outcomes_a_few_thousand_ulps_apart_far_from_zero(client, auth):
    """1e9 plus steps of 1e-6 are hundreds of ulps apart: a real spread, not equal outcomes rounded."""
    arm, p, y = _spend_bandit(client, auth, [1e9 + u * 1e-6 for u in range(60)])
    rows = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))["arms"]
    for row in rows:
        mine = arm == row["arm"]
        if mine.sum() < 2:
            continue
        # The reference from exact fractions of the stored doubles: numpy's own mean would be off by an ulp of 1e9.
        w = [Fraction(1) / Fraction(float(q)) for q in p[mine]]
        values = [Fraction(float(v)) for v in y[mine]]
        mean = sum(a * b for a, b in zip(w, values)) / sum(w)
        half = sps.norm.isf(0.025) * math.sqrt(float(sum(a * a * (b - mean) ** 2 for a, b in zip(w, values)))) / float(sum(w))
        assert row["snipw_ci"] is not None, row["notes"]
        exact = [float(mean) - half, float(mean) + half]
        assert row["snipw_ci"] == pytest.approx(exact, rel=0, abs=2 * math.ulp(1e9))  # each bound to the doubles near 1e9
        assert not any("same outcome" in note for note in row["notes"])


def test_a_bandit_with_no_floor_gives_its_weighted_estimates_no_interval_and_says_why(client, auth):
    """UCB1 with min_probability 0 gives each user one arm for certain: IPW's positivity fails, and with
    every user converting the IPW means sat at 0.75, not 1, inside confident intervals."""
    body = bandit_definition(arms=2, bandit={"algorithm": "ucb1", "min_probability": 0})
    running(client, auth("editor"), body)
    shop = auth("storefront")
    for u in range(40):
        assign(client, shop, "bonus-bandit", f"z{u}")
        post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"z-{u}", "experiment": "bonus-bandit", "user_id": f"z{u}", "metric": "conversion"}]}, shop)
    answer = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))
    assert answer["safe_to_compare"] == [] and any("min_probability is 0" in n for n in answer["notes"])
    assert all(row["ipw_ci"] is None and row["snipw_ci"] is None for row in answer["arms"])
    # Nor does any note speak of intervals that are not there ("likely too narrow", "read the snipw interval").
    weighted = ("weighted", "IPW", "self-normalised", "snipw")
    assert not any(w in note for row in answer["arms"] for note in row["notes"] for w in weighted)
    value = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": {"arm0": 0.5, "arm1": 0.5}}, auth("analyst"))
    assert value["ipw"]["ci"] is None and value["snipw"]["ci"] is None and any("min_probability is 0" in n for n in value["notes"])
    assert [n for n in value["notes"] if "interval" in n] == [n for n in value["notes"] if "min_probability is 0" in n]
    # Epsilon-greedy explores every arm itself: no floor needed.
    greedy = bandit_definition(arms=2, key="greedy", bandit={"algorithm": "epsilon_greedy", "epsilon": 0.2, "min_probability": 0})
    running(client, auth("editor"), greedy)
    assign(client, shop, "greedy", "z0")
    assert get_ok(client, "/v1/experiments/greedy/results", auth("analyst"))["safe_to_compare"] == ["ipw_mean", "snipw_mean"]
