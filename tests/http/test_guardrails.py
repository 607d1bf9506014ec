"""Guardrails: which side of zero is worse, and an `ok` that rests on no evidence says so."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from scipy import stats as sps

from tests.experiment_helpers import ab_definition, assign, bandit_definition, no_conversions_in_every5, running
from tests.helpers import get_ok, post_ok

COMPLAINTS = {"key": "complaints", "kind": "binary", "higher_is_better": False}


def _wald(c: np.ndarray, t: np.ndarray, alpha: float = 0.05) -> tuple[float, list[float]]:
    pc, pt = c.mean(), t.mean()
    half = sps.norm.ppf(1 - alpha / 2) * np.sqrt(pc * (1 - pc) / len(c) + pt * (1 - pt) / len(t))
    return pt - pc, [pt - pc - half, pt - pc + half]


@pytest.fixture
def complaints(client, auth):
    """600 users: every5 complains far more than the control, lottery far less, whatever each arm's share of them."""
    shop = auth("storefront")
    body = ab_definition(metrics=[{"key": "conversion"}, COMPLAINTS], guardrails=["complaints", "conversion"])
    running(client, auth("editor"), body)
    percent = {"control": 10, "every5": 30, "lottery": 2}
    seen: dict[str, list[int]] = {arm: [] for arm in percent}
    outcomes = []
    for u in range(600):
        arm = assign(client, shop, "points-q4", f"u{u}")["arm"]
        complained = int(len(seen[arm]) % 100 < percent[arm])
        seen[arm].append(complained)
        if complained:
            outcomes.append({"outcome_id": f"c{u}", "experiment": "points-q4", "user_id": f"u{u}", "metric": "complaints", "value": 1})
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    return seen


def test_a_lower_is_better_guardrail_fails_when_its_interval_lies_wholly_above_zero(client, auth, complaints):
    body = get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))
    rows = {(g["arm"], g["metric"]): g for g in body["guardrails"]}
    c = np.array(complaints["control"], dtype=float)
    worse = rows[("every5", "complaints")]
    diff, ci = _wald(c, np.array(complaints["every5"], dtype=float))
    assert worse["diff"] == pytest.approx(diff, rel=1e-9) and worse["diff_ci"] == pytest.approx(ci, rel=1e-9)
    assert ci[0] > 0 and (worse["status"], worse["higher_is_better"], worse["note"]) == ("fail", False, None)
    better = rows[("lottery", "complaints")]
    assert better["diff"] < 0 and better["status"] == "ok"
    # The same difference on a metric where higher is better keeps the contract's reading.
    assert rows[("every5", "conversion")]["higher_is_better"] is True


def test_a_lower_is_better_guardrail_warns_on_a_rise_its_interval_cannot_confirm(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(weights=(1, 1, 0.000001), metrics=[{"key": "conversion"}, COMPLAINTS], guardrails=["complaints"]))
    users = {arm: [] for arm in ("control", "every5")}
    for u in range(60):
        users[assign(client, shop, "points-q4", f"w{u}")["arm"]].append(f"w{u}")
    # One complaint more in every5 than in the control: a rise far inside the noise.
    post_ok(client, "/v1/outcomes", {"outcomes": [
        {"outcome_id": f"k{i}", "experiment": "points-q4", "user_id": user, "metric": "complaints", "value": 1}
        for i, user in enumerate(users["control"][:1] + users["every5"][:3])
    ]}, shop)
    rows = {g["arm"]: g for g in get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["guardrails"]}
    assert rows["every5"]["diff"] > 0 and rows["every5"]["diff_ci"][0] < 0 and rows["every5"]["status"] == "warn"
    # An arm nobody was assigned to has no comparison: `ok` by the formula, with the reason beside it.
    assert rows["lottery"]["diff"] is None and rows["lottery"]["status"] == "ok" and "no exposed users" in rows["lottery"]["note"]


def test_metrics_read_back_with_their_defaults_and_a_bandit_must_maximise(client, auth):
    editor = auth("editor")
    created = post_ok(client, "/v1/experiments", ab_definition(metrics=[{"key": "conversion"}, COMPLAINTS]), editor, status=201)
    assert created["metrics"] == [{"key": "conversion", "kind": "binary", "higher_is_better": True}, COMPLAINTS]
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst"))["metrics"] == created["metrics"]
    resp = client.post("/v1/experiments", json=bandit_definition(metrics=[COMPLAINTS], primary_metric="complaints"), headers=editor)
    assert resp.status_code == 422
    assert [d["field"] for d in resp.get_json()["error"]["details"]] == ["primary_metric"]
    assert client.get("/v1/experiments/bonus-bandit", headers=editor).status_code == 404


def test_a_retention_guardrail_says_nobody_is_old_enough_yet_and_the_split_counts_every_exposure(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(guardrails=["retention_d7"]))
    arms = [assign(client, shop, "points-q4", f"r{u}")["arm"] for u in range(90)]  # exposed now: day 7 is a week away
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=retention_d7", auth("analyst"))
    assert [a["users"] for a in body["arms"]] == [0, 0, 0]
    assert body["srm"]["observed"] == [arms.count(a["arm"]) for a in body["arms"]]
    retention_notes = [n for a in body["arms"][1:] for n in a["notes"] if "reward action" not in n]  # no reward actions were sent either
    for note in [g["note"] for g in body["guardrails"]] + retention_notes:
        assert note.count("exposed 8 or more days ago") == 1 and "no exposed users" not in note


def test_results_and_their_csv_say_which_way_a_metric_is_better(client, auth, complaints):
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=complaints", auth("analyst"))
    assert body["higher_is_better"] is False
    assert get_ok(client, "/v1/experiments/points-q4/results?metric=conversion", auth("analyst"))["higher_is_better"] is True
    table = client.get("/v1/experiments/points-q4/results.csv?metric=complaints", headers=auth("analyst")).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(table)))
    assert next(iter(rows[0])) == "experiment" and list(rows[0])[-2:] == ["higher_is_better", "reward_actions"]  # added last, so columns keep their positions
    assert {r["higher_is_better"] for r in rows} == {"false"}


def test_a_guardrail_on_a_handful_of_conversions_says_its_status_is_rough_also_under_cuped(client, auth):
    """Purchase conversion (CUPED on by default) where an arm has no conversion at all: the status stands, with the note."""
    users = no_conversions_in_every5(client, auth("editor"), auth("storefront"))
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=purchase_conversion", auth("analyst"))
    assert body["test"] == "welch_t_cuped"
    row = next(g for g in body["guardrails"] if g["arm"] == "every5")
    arm = next(a for a in body["arms"] if a["arm"] == "every5")
    # (The split is random: the control may be thin too, and is then named first.)
    assert row["note"] is not None and f"this arm has 0 conversions of {len(users['every5'])}" in row["note"] and row["note"] in arm["notes"]
