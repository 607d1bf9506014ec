"""Results end to end: HTTP exposures and outcomes give the reference statistics, in JSON and CSV."""
from __future__ import annotations

import csv
import io
import math
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

from tests.experiment_helpers import ab_definition, assign, bandit_definition, running
from tests.helpers import get_ok, iso, post_ok

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def populated(client, auth):
    """600 users over three arms; known conversions and spend per user."""
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    rng = np.random.default_rng(42)
    rate = {"control": 0.10, "every5": 0.16, "lottery": 0.13}
    arms, converted, spend, outcomes = {}, {}, {}, []
    for i in range(600):
        user = f"user-{i}"
        arms[user] = assign(client, shop, "points-q4", user, timestamp=iso(T0 + timedelta(hours=i % 72)))["arm"]
        converted[user] = bool(rng.random() < rate[arms[user]])
        spend[user] = 0.0
        if converted[user]:
            outcomes.append({"outcome_id": f"c-{i}", "experiment": "points-q4", "user_id": user, "metric": "conversion", "value": 1, "timestamp": iso(T0 + timedelta(days=3))})
            for j in range(int(rng.integers(1, 3))):
                value = round(float(rng.exponential(30)), 2)
                spend[user] += value
                outcomes.append({"outcome_id": f"s-{i}-{j}", "experiment": "points-q4", "user_id": user, "metric": "spend", "value": value, "timestamp": iso(T0 + timedelta(days=4))})
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    return arms, converted, spend


def test_binary_results_match_statsmodels(client, auth, populated):
    arms, converted, _ = populated
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=conversion&alpha=0.05", auth("analyst"))
    assert (body["test"], body["correction"], body["metric_kind"], body["type"]) == ("two_proportion_z", "holm", "binary", "ab")
    n = {a: sum(1 for u in arms if arms[u] == a) for a in ("control", "every5", "lottery")}
    x = {a: sum(1 for u in arms if arms[u] == a and converted[u]) for a in n}
    rows = {r["arm"]: r for r in body["arms"]}
    raw = []
    for arm in n:
        r = rows[arm]
        assert (r["users"], r["total"]) == (n[arm], x[arm])
        assert r["mean"] == pytest.approx(x[arm] / n[arm], rel=1e-12)
        assert r["ci"] == pytest.approx(list(proportion_confint(x[arm], n[arm], 0.05, "wilson")), rel=1e-9)
        if arm == "control":
            assert all(r[k] is None for k in ("diff", "diff_ci", "lift", "lift_ci", "p_value", "p_value_adjusted", "significant", "chance_to_beat_control"))
            continue
        _, p = proportions_ztest([x[arm], x["control"]], [n[arm], n["control"]])
        raw.append(p)
        assert r["p_value"] == pytest.approx(p, rel=1e-9)
        lo, hi = confint_proportions_2indep(x[arm], n[arm], x["control"], n["control"], method="wald", compare="diff")
        assert r["diff_ci"] == pytest.approx([lo, hi], rel=1e-9)
        assert 0 <= r["chance_to_beat_control"] <= 1
    _, holm, _, _ = multipletests(raw, method="holm")
    assert [rows[a]["p_value_adjusted"] for a in ("every5", "lottery")] == pytest.approx(list(holm), rel=1e-9)
    assert body["srm"]["observed"] == [n["control"], n["every5"], n["lottery"]]
    assert body["srm"]["p_value"] == pytest.approx(sps.chisquare(list(n.values())).pvalue, rel=1e-9)


def test_continuous_results_match_scipy_welch(client, auth, populated):
    arms, _, spend = populated
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=spend&alpha=0.1&correction=bh", auth("analyst"))
    assert body["test"] == "welch_t" and body["correction"] == "bh"
    values = {a: np.array([spend[u] for u in arms if arms[u] == a]) for a in ("control", "every5", "lottery")}
    rows = {r["arm"]: r for r in body["arms"]}
    for arm in ("every5", "lottery"):
        ref = sps.ttest_ind(values[arm], values["control"], equal_var=False)
        assert rows[arm]["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
        assert rows[arm]["diff_ci"] == pytest.approx(list(ref.confidence_interval(0.9)), rel=1e-6)
        assert rows[arm]["total"] == pytest.approx(values[arm].sum(), rel=1e-9)
    lo, hi = sps.t.interval(0.9, len(values["control"]) - 1, values["control"].mean(), sps.sem(values["control"]))
    assert rows["control"]["ci"] == pytest.approx([lo, hi], rel=1e-6)


def test_csv_has_the_same_rows(client, auth, populated):
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=conversion", auth("analyst"))
    resp = client.get("/v1/experiments/points-q4/results.csv?metric=conversion", headers=auth("analyst"))
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [r["arm"] for r in rows] == [a["arm"] for a in body["arms"]]
    for row, arm in zip(rows, body["arms"]):
        assert int(row["users"]) == arm["users"]
        for name in ("mean", "p_value", "p_value_adjusted", "chance_to_beat_control", "lift"):
            assert (row[name] == "" and arm[name] is None) or float(row[name]) == arm[name]
        if arm["diff_ci"]:
            assert [float(row["diff_ci_low"]), float(row["diff_ci_high"])] == arm["diff_ci"]
        assert row["notes"] == "; ".join(arm["notes"])  # a warning must not be lost on the way to a spreadsheet


def test_daily_series_is_cumulative(client, auth, populated):
    arms, converted, spend = populated
    continuous = get_ok(client, "/v1/experiments/points-q4/results/daily?metric=spend", auth("analyst"))["days"][-1]["arms"]
    for row in continuous:
        assert row["total"] == pytest.approx(sum(spend[u] for u in arms if arms[u] == row["arm"]), rel=1e-9)
    body = get_ok(client, "/v1/experiments/points-q4/results/daily?metric=conversion", auth("analyst"))
    days = body["days"]
    assert days[0]["date"] == "2026-10-01"
    last = {a["arm"]: a for a in days[-1]["arms"]}
    for arm in ("control", "every5", "lottery"):
        users = [u for u in arms if arms[u] == arm]
        assert last[arm]["users"] == len(users)
        assert last[arm]["total"] == sum(converted[u] for u in users)
    counts = [sum(a["users"] for a in d["arms"]) for d in days]
    assert counts == sorted(counts) and counts[-1] == 600


def test_each_day_of_the_series_has_each_arms_difference_with_its_confidence_sequence(client, auth, populated):
    # The API's sequence formula written out, with s2 = se^2 n and se unpooled (Wald's), at the experiment's tuning.
    def sequence(pc: float, nc: int, pt: float, nt: int, alpha: float, tuning: float = 5000.0) -> list[float]:
        se = math.sqrt(pc * (1 - pc) / nc + pt * (1 - pt) / nt)
        n = nc + nt
        r = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
        half = math.sqrt(se * se * n) * math.sqrt(2 * (n * r * r + 1) * math.log(math.sqrt(n * r * r + 1) / alpha) / (n * r) ** 2)
        return [pt - pc - half, pt - pc + half]

    for alpha in (0.05, 0.1):
        days = get_ok(client, f"/v1/experiments/points-q4/results/daily?metric=conversion&alpha={alpha}", auth("analyst"))["days"]
        checked = 0
        for day in days:
            control, *others = day["arms"]
            assert control["diff"] is None and control["diff_ci"] is None
            for arm in others:
                if not (control["users"] and arm["users"]):
                    assert arm["diff"] is None and arm["diff_ci"] is None
                    continue
                pc, pt = control["total"] / control["users"], arm["total"] / arm["users"]
                assert arm["diff"] == pytest.approx(pt - pc, rel=1e-12, abs=1e-15)
                if 0 < pc < 1 or 0 < pt < 1:
                    assert arm["diff_ci"] == pytest.approx(sequence(pc, control["users"], pt, arm["users"], alpha), rel=1e-9)
                    checked += 1
                else:  # the days before anyone converted: no variation, so no sequence, as /results says
                    assert arm["diff_ci"] is None
        assert checked == 2  # both arms on the day the fixture's conversions land
        # The last day's sequence is the one /results gives when read sequentially without CUPED.
        final = get_ok(client, f"/v1/experiments/points-q4/results?metric=conversion&sequential=true&cuped=false&alpha={alpha}", auth("analyst"))
        last = {a["arm"]: a for a in days[-1]["arms"]}
        for arm in final["arms"][1:]:
            assert last[arm["arm"]]["diff_ci"] == pytest.approx(arm["diff_ci"], rel=1e-12)
    # A mean has its difference and no interval: the series keeps no spread of the values.
    spend = get_ok(client, "/v1/experiments/points-q4/results/daily?metric=spend", auth("analyst"))["days"][-1]["arms"]
    assert all(a["diff_ci"] is None for a in spend) and spend[1]["diff"] == pytest.approx(spend[1]["mean"] - spend[0]["mean"], rel=1e-12)
    assert client.get("/v1/experiments/points-q4/results/daily?alpha=1", headers=auth("analyst")).status_code == 422


@pytest.mark.parametrize("metric, value", [("spend", 40.0), ("conversion", 1)])
def test_an_outcome_dated_before_its_users_exposure_counts_from_that_exposure(client, auth, metric, value):
    # u-late reports on day 0 but is exposed on day 2: day 0's mean holds u-early alone, with nothing gained.
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    early = assign(client, shop, "points-q4", "u-early", timestamp=iso(T0))["arm"]
    late = assign(client, shop, "points-q4", "u-late", timestamp=iso(T0 + timedelta(days=2)))["arm"]
    outcome = {"outcome_id": "o-1", "experiment": "points-q4", "user_id": "u-late", "metric": metric, "value": value, "timestamp": iso(T0)}
    post_ok(client, "/v1/outcomes", {"outcomes": [outcome]}, shop)
    days = get_ok(client, f"/v1/experiments/points-q4/results/daily?metric={metric}", auth("analyst"))["days"]
    assert [d["date"] for d in days] == ["2026-10-01", "2026-10-02", "2026-10-03"]
    for k, day in enumerate(days):
        arms = {a["arm"]: (a["users"], a["total"]) for a in day["arms"]}
        assert arms[late][1] == (value if k == 2 else 0)
        assert sum(users for users, _ in arms.values()) == (2 if k == 2 else 1) and arms[early][0] >= 1


def test_retention_and_purchase_metrics_from_events_match_hand_counts(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(weights=(1, 1, 1)))
    post_ok(client, "/v1/items", {"items": [{"item_id": "i1"}]}, shop)
    events = []
    expected = {}
    for i in range(90):
        user = f"u{i}"
        arm = assign(client, shop, "points-q4", user, timestamp=iso(T0))["arm"]
        pattern = i % 5  # 0: nothing; 1: day-1 visit; 2: day-7 visit and a purchase; 3: day-0 purchase only; 4: event before exposure
        offsets = {0: [], 1: [1.5], 2: [7.2], 3: [0.1], 4: [-2.0]}[pattern]
        for j, days in enumerate(offsets):
            kind = "purchase" if pattern in (2, 3) else "view"
            events.append({"event_id": f"e-{i}-{j}", "user_id": user, "item_id": "i1", "type": kind, "value": 10.0 if kind == "purchase" else None, "timestamp": iso(T0 + timedelta(days=days))})
        expected[user] = (arm, pattern)
    post_ok(client, "/v1/events", {"events": events}, shop)

    def figures(metric: str) -> dict:
        body = get_ok(client, f"/v1/experiments/points-q4/results?metric={metric}", auth("analyst"))
        return {r["arm"]: (r["users"], r["total"]) for r in body["arms"]}

    def hand(match) -> dict:
        out = {}
        for arm in ("control", "every5", "lottery"):
            users = [u for u, (a, _) in expected.items() if a == arm]
            out[arm] = (len(users), sum(match(expected[u][1]) for u in users))
        return out

    assert figures("retention_d1") == hand(lambda p: p == 1)
    assert figures("retention_d7") == hand(lambda p: p == 2)
    assert figures("purchase_conversion") == hand(lambda p: p in (2, 3))
    assert figures("revenue") == {a: (n, 10.0 * t) for a, (n, t) in hand(lambda p: p in (2, 3)).items()}
    for metric in ("purchase_conversion", "revenue"):  # the daily series ends where the results stand
        days = get_ok(client, f"/v1/experiments/points-q4/results/daily?metric={metric}", auth("analyst"))["days"]
        assert {a["arm"]: (a["users"], a["total"]) for a in days[-1]["arms"]} == figures(metric)
    resp = client.get("/v1/experiments/points-q4/results/daily?metric=retention_d7", headers=auth("analyst"))
    assert resp.status_code == 422


def test_a_return_nets_off_revenue_and_converts_nobody(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(weights=(1, 0.001, 0.001), analysis={"cuped": False}))
    post_ok(client, "/v1/items", {"items": [{"item_id": "i1"}]}, shop)
    sent = {"returned": [-50.0], "bought-and-returned": [20.0, -20.0], "free": [0.0], "unpriced": [None]}
    users = [u for u in sent if assign(client, shop, "points-q4", u, timestamp=iso(T0))["arm"] == "control"]
    events = [{"event_id": f"{u}-{k}", "user_id": u, "item_id": "i1", "type": "purchase", "value": v, "timestamp": iso(T0 + timedelta(hours=1 + k))}
              for u in users for k, v in enumerate(sent[u])]
    post_ok(client, "/v1/events", {"events": events}, shop)
    control = {m: get_ok(client, f"/v1/experiments/points-q4/results?metric={m}", auth("analyst"))["arms"][0] for m in ("purchase_conversion", "revenue")}
    assert control["purchase_conversion"]["total"] == sum(u != "returned" for u in users)
    assert control["revenue"]["total"] == sum(v or 0.0 for u in users for v in sent[u])
    daily = get_ok(client, "/v1/experiments/points-q4/results/daily?metric=purchase_conversion", auth("analyst"))["days"]
    assert daily[-1]["arms"][0]["total"] == control["purchase_conversion"]["total"]


def test_bandit_results_give_ipw_and_allocation_and_no_srm(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), bandit_definition())
    logged: dict[str, list[tuple[float, int]]] = {}
    for i in range(120):
        answer = assign(client, shop, "bonus-bandit", f"u{i}")
        converted = answer["arm"] == "arm2" or i % 4 == 0
        logged.setdefault(answer["arm"], []).append((answer["probability"], int(converted)))
        if converted:
            post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o{i}", "experiment": "bonus-bandit", "user_id": f"u{i}", "metric": "conversion"}]}, shop)
    body = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))
    assert body["srm"] is None and body["safe_to_compare"] == ["ipw_mean", "snipw_mean"]
    assert sum(body["allocation"].values()) == pytest.approx(1.0)
    assert min(body["allocation"].values()) >= 0.01 - 1e-12  # the floor holds even for a clear loser
    for row in body["arms"]:
        pairs = logged.get(row["arm"], [])
        assert row["users"] == len(pairs)
        if pairs:  # IPW over all exposed users, and its self-normalised form, from the propensities the assignments reported
            assert row["ipw_mean"] == pytest.approx(sum(y / p for p, y in pairs) / 120, rel=1e-9)
            assert row["snipw_mean"] == pytest.approx(sum(y / p for p, y in pairs) / sum(1 / p for p, _ in pairs), rel=1e-9)
    assert any("biased" in n for n in body["notes"])


def test_bad_queries_are_422_and_degenerate_data_is_explained(client, auth):
    analyst = auth("analyst")
    running(client, auth("editor"), ab_definition())
    for query in ("metric=nope", "alpha=2", "alpha=abc", "correction=bonferroni"):
        resp = client.get(f"/v1/experiments/points-q4/results?{query}", headers=analyst)
        assert resp.status_code == 422, query
    assert client.get("/v1/experiments/missing/results", headers=analyst).status_code == 404
    body = get_ok(client, "/v1/experiments/points-q4/results", analyst)
    assert all(r["users"] == 0 and r["mean"] is None and r["notes"] for r in body["arms"])
    assert body["srm"] is None
    sized = get_ok(client, "/v1/experiments/points-q4/results?mde=0.02", analyst)
    assert sized["sample_size"]["users_per_arm"] is None and "cannot size" in sized["sample_size"]["note"]


def test_whole_number_totals_are_exact_and_agree_with_the_daily_series(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    rng = np.random.default_rng(7)
    sums: dict[str, int] = {}
    outcomes = []
    for i in range(157):
        arm = assign(client, shop, "points-q4", f"w{i}", timestamp=iso(T0))["arm"]
        value = int(rng.integers(0, 40)) // 3 * 3 + 1  # whole numbers, one in three reported as 0 below
        if i % 3 == 0:  # a third of the users report nothing: they count as zeros
            value = 0
        sums[arm] = sums.get(arm, 0) + value
        if value:
            outcomes.append({"outcome_id": f"w{i}", "experiment": "points-q4", "user_id": f"w{i}", "metric": "spend", "value": value, "timestamp": iso(T0 + timedelta(days=1))})
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    totals = {r["arm"]: r["total"] for r in get_ok(client, "/v1/experiments/points-q4/results?metric=spend", auth("analyst"))["arms"]}
    daily = {r["arm"]: r["total"] for r in get_ok(client, "/v1/experiments/points-q4/results/daily?metric=spend", auth("analyst"))["days"][-1]["arms"]}
    assert totals == daily == {arm: float(total) for arm, total in sums.items()}


def test_a_conversion_is_dated_by_the_first_positive_outcome_whatever_order_the_batches_come_in(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    arms = {user: assign(client, shop, "points-q4", user, timestamp=iso(T0))["arm"] for user in ("a", "b")}

    def batch(user: str, name: str, *values: tuple[float, datetime]) -> dict:
        return {"outcomes": [{"outcome_id": f"{user}-{name}-{i}", "experiment": "points-q4", "user_id": user, "metric": "conversion",
                              "value": v, "timestamp": iso(t)} for i, (v, t) in enumerate(values)]}

    refunded = (1, T0 + timedelta(days=1)), (-1, T0 + timedelta(days=1))  # a purchase and its refund, same day
    bought = (1, T0 + timedelta(days=19)),
    post_ok(client, "/v1/outcomes", batch("a", "refunded", *refunded), shop)
    post_ok(client, "/v1/outcomes", batch("a", "bought", *bought), shop)
    post_ok(client, "/v1/outcomes", batch("b", "bought", *bought), shop)
    post_ok(client, "/v1/outcomes", batch("b", "refunded", *refunded), shop)
    days = get_ok(client, "/v1/experiments/points-q4/results/daily?metric=conversion", auth("analyst"))["days"]

    def converted(day: datetime) -> int:  # the series lists the days on which something changed
        row = [d for d in days if d["date"] <= iso(day)[:10]][-1]
        return int(sum(a["total"] for a in row["arms"] if a["arm"] in arms.values()))

    assert [converted(T0), converted(T0 + timedelta(days=1)), converted(T0 + timedelta(days=19))] == [0, 2, 2]


def daily_ending_today(client, analyst: dict[str, str]) -> tuple[list[dict], date]:
    """The spend series, and the day it ends on, checked to be today (either side of midnight, UTC, when the request crossed it)."""
    before = datetime.now(timezone.utc).date()
    days = get_ok(client, "/v1/experiments/points-q4/results/daily?metric=spend", analyst)["days"]
    today = date.fromisoformat(days[-1]["date"])
    assert today in (before, datetime.now(timezone.utc).date())
    return days, today


def test_the_daily_series_ends_today_and_counts_what_is_dated_later_on_it(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    arm = assign(client, shop, "points-q4", "early", timestamp=iso(T0))["arm"]
    late = assign(client, shop, "points-q4", "late", timestamp="2120-01-01T00:00:00Z")["arm"]
    post_ok(client, "/v1/outcomes", {"outcomes": [  # a client whose clock is a century ahead
        {"outcome_id": "far", "experiment": "points-q4", "user_id": "early", "metric": "spend", "value": 7, "timestamp": "2125-06-01T00:00:00Z"},
    ]}, shop)
    days, today = daily_ending_today(client, auth("analyst"))
    assert days[0]["date"] == iso(T0)[:10] and len(days) == (today - T0.date()).days + 1
    last = {a["arm"]: a for a in days[-1]["arms"]}
    assert last[arm]["total"] == 7 and sum(a["users"] for a in last.values()) == 2 and last[late]["users"] >= 1
    totals = {r["arm"]: (r["users"], r["total"]) for r in get_ok(client, "/v1/experiments/points-q4/results?metric=spend", auth("analyst"))["arms"]}
    assert totals == {a: (row["users"], row["total"]) for a, row in last.items()}


def test_an_exposure_dated_years_back_keeps_the_daily_series_to_its_last_thousand_days(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    old = assign(client, shop, "points-q4", "loaded", timestamp="2000-01-01T00:00:00Z")["arm"]
    assign(client, shop, "points-q4", "recent")
    post_ok(client, "/v1/outcomes", {"outcomes": [
        {"outcome_id": "then", "experiment": "points-q4", "user_id": "loaded", "metric": "spend", "value": 4, "timestamp": "2000-01-02T00:00:00Z"},
    ]}, shop)
    days, today = daily_ending_today(client, auth("analyst"))
    assert len(days) == 1000 and days[0]["date"] == (today - timedelta(days=999)).isoformat()
    first = {a["arm"]: a for a in days[0]["arms"]}
    assert first[old]["users"] == 1 and first[old]["total"] == 4  # what is dated earlier counts on the first day
    assert sum(a["users"] for a in days[-1]["arms"]) == 2


def test_an_exposure_dated_ahead_of_the_clock_counts_for_every_metric_and_on_today_in_the_series(client, auth):
    """A storefront whose clock runs ahead: its user is exposed, and their purchase counts, whatever the metric."""
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    assign(client, shop, "points-q4", "u-now")
    ahead = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
    assign(client, shop, "points-q4", "u-ahead", timestamp=ahead)
    post_ok(client, "/v1/events", {"events": [{"event_id": "b1", "user_id": "u-ahead", "item_id": "i1", "type": "purchase", "value": 10, "timestamp": ahead}]}, shop)
    srm = None
    for metric in ("purchase_conversion", "revenue", "spend", "conversion"):
        results = get_ok(client, f"/v1/experiments/points-q4/results?metric={metric}&cuped=false", auth("analyst"))
        days = get_ok(client, f"/v1/experiments/points-q4/results/daily?metric={metric}", auth("analyst"))["days"]
        assert sum(a["users"] for a in results["arms"]) == sum(a["users"] for a in days[-1]["arms"]) == 2, metric
        assert srm is None or results["srm"]["observed"] == srm
        srm = results["srm"]["observed"]
        if metric == "revenue":
            assert sum(a["total"] for a in results["arms"]) == sum(a["total"] for a in days[-1]["arms"]) == 10


def test_a_daily_series_of_a_retention_primary_metric_says_where_the_metric_came_from(client, auth):
    # Asked without ?metric=, the refusal had blamed query.metric as if the client had sent it.
    running(client, auth("editor"), ab_definition(key="kept", primary_metric="retention_d7"))
    resp = client.get("/v1/experiments/kept/results/daily", headers=auth("analyst"))
    error = resp.get_json()["error"]
    assert resp.status_code == 422 and "the primary metric, 'retention_d7', has no daily series" in error["details"][0]["message"]
    assert "send one as metric=" in error["details"][0]["message"]
    asked = client.get("/v1/experiments/kept/results/daily?metric=retention_d1", headers=auth("analyst")).get_json()["error"]
    assert asked["details"][0]["message"].startswith("'retention_d1' has no daily series")
    assert client.get("/v1/experiments/kept/results/daily?metric=conversion", headers=auth("analyst")).status_code == 200
