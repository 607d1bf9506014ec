"""Results on data where the formulas are at their edges: one-user arms, arms constant but different,
and a CUPED covariate that predicts the outcome almost exactly. References from numpy and scipy."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pytest
from scipy import stats

from experiments.assignment import ab_arm
from service.store.database import Database
from tests.experiment_helpers import assign, running
from tests.helpers import get_ok, iso, post_ok

Auth = Callable[[str], dict[str, str]]


def _exposed(client: Any, auth: Auth, db: Database, key: str, sizes: tuple[int, int]) -> tuple[list[str], list[str]]:
    """A running A/B test (control, treatment) with a binary reported metric, and exactly `sizes` users exposed to its arms."""
    running(client, auth("editor"), {"key": key, "name": key, "arms": [{"key": "control"}, {"key": "treatment"}],
                                     "metrics": [{"key": "conversion", "kind": "binary"}], "primary_metric": "conversion"})
    salt = db.fetch("SELECT salt FROM experiments WHERE key = ?", (key,))[0][0]
    arms: tuple[list[str], list[str]] = ([], [])
    candidate = 0
    while len(arms[0]) < sizes[0] or len(arms[1]) < sizes[1]:
        user = f"{key}-{candidate}"
        candidate += 1
        index = ab_arm(salt, key, user, [1, 1])
        if len(arms[index]) < sizes[index]:
            assign(client, auth("storefront"), key, user)
            arms[index].append(user)
    return arms


def _convert(client: Any, auth: Auth, key: str, users: list[str]) -> None:
    outcomes = [{"outcome_id": f"o-{u}", "experiment": key, "user_id": u, "metric": "conversion", "value": 1} for u in users]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, auth("storefront"))


def test_a_one_user_arm_keeps_the_contract_s_delta_method_lift_interval_and_is_flagged(client: Any, auth: Auth, db: Database) -> None:
    # The contract's delta method takes a rate's variance as p(1 - p)/n, 0 for one converted user: the
    # interval is the formula's, and the arm's notes say how little it rests on.
    control, treatment = _exposed(client, auth, db, "one-user", (1, 20))
    _convert(client, auth, "one-user", control + treatment[:7])
    arm = get_ok(client, "/v1/experiments/one-user/results", auth("analyst"))["arms"][1]
    lift, z = 7 / 20 - 1, stats.norm.isf(0.025)
    half = z * np.sqrt(0.35 * 0.65 / 20) / 1.0  # v_t / m_c^2 with v_c = 0
    assert arm["lift"] == pytest.approx(lift, rel=1e-12)
    assert arm["lift_ci"] == pytest.approx([lift - half, lift + half], rel=1e-9)
    assert any("normal approximation" in note for note in arm["notes"])


def test_arms_constant_but_different_have_no_confidence_sequence_for_the_lift(client: Any, auth: Auth, db: Database) -> None:
    control, _ = _exposed(client, auth, db, "constant", (20, 30))
    _convert(client, auth, "constant", control)  # 20 of 20 against 0 of 30
    sequential = get_ok(client, "/v1/experiments/constant/results?sequential=true", auth("analyst"))["arms"][1]
    assert sequential["lift"] == -1.0
    assert sequential["diff_ci"] is None and sequential["lift_ci"] is None
    fixed = get_ok(client, "/v1/experiments/constant/results", auth("analyst"))["arms"][1]
    assert fixed["diff_ci"] == [-1.0, -1.0]  # Wald's zero-width interval, as the formula gives


def _user_in(db: Database, key: str, arm: int, prefix: str) -> str:
    """A user id that the experiment's salt puts in arm `arm` of two equal ones: a test's data then split the
    same way on every run, whatever salt the experiment drew."""
    salt = db.fetch("SELECT salt FROM experiments WHERE key = ?", (key,))[0][0]
    return next(f"{prefix}-{k}" for k in range(1000) if ab_arm(salt, key, f"{prefix}-{k}", [1, 1]) == arm)


@pytest.mark.parametrize("noise", [1e-5, 1e-7, 0.0])
def test_cuped_with_a_covariate_that_predicts_revenue_almost_exactly(client: Any, auth: Auth, db: Database, noise: float) -> None:
    # Revenue after exposure is twice the revenue before, plus noise in the 5th to 9th decimal: the
    # adjusted values still vary, far above a double's rounding, where m2_y - 2 theta c_xy + theta^2 m2_x
    # had cancelled to nothing and the service had given no interval and a chance to beat control of 1.
    key = "collinear"
    running(client, auth("editor"), {"key": key, "name": key, "arms": [{"key": "control"}, {"key": "treatment"}],
                                     "metrics": [{"key": "conversion", "kind": "binary"}], "primary_metric": "conversion"})
    exposed = datetime.now(timezone.utc).timestamp() - 3 * 86_400
    rng = np.random.default_rng(10)
    arms, xs, ys, events = [], [], [], []
    for u in range(65):
        user = _user_in(db, key, u % 2, f"c{u}")  # the same split on every run: p here moves in its 7th digit with the split
        arms.append(assign(client, auth("storefront"), key, user, timestamp=iso(exposed))["arm"])
        x = float(rng.integers(1, 50))
        y = 2 * x + noise * float(rng.integers(-3, 4))
        xs.append(x)
        ys.append(y)
        events += [{"event_id": f"c{u}-before", "user_id": user, "item_id": "i", "type": "purchase", "value": x, "timestamp": iso(exposed - 3600)},
                   {"event_id": f"c{u}-after", "user_id": user, "item_id": "i", "type": "purchase", "value": y, "timestamp": iso(exposed + 3600)}]
    post_ok(client, "/v1/events", {"events": events}, auth("storefront"))
    x, y, arm = np.array(xs), np.array(ys), np.array(arms)
    theta = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    adjusted = y - theta * (x - x.mean())
    control, treatment = adjusted[arm == "control"], adjusted[arm == "treatment"]

    body = get_ok(client, f"/v1/experiments/{key}/results?metric=revenue", auth("analyst"))
    assert body["test"] == "welch_t_cuped"
    assert body["cuped"]["theta"] == pytest.approx(theta, rel=1e-9)
    got = body["arms"][1]
    if noise == 0.0:  # y' is exactly constant within each arm: no interval rather than one a few ulps wide
        assert got["diff_ci"] is None and got["p_value"] is None
        return
    welch = stats.ttest_ind(treatment, control, equal_var=False)
    assert got["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
    low, high = welch.confidence_interval(0.95)
    assert got["diff_ci"] == pytest.approx([low, high], rel=1e-6)
    se = np.sqrt(treatment.var(ddof=1) / len(treatment) + control.var(ddof=1) / len(control))
    assert got["chance_to_beat_control"] == pytest.approx(stats.norm.cdf((treatment.mean() - control.mean()) / se), rel=1e-6)


def test_a_retention_metric_nobody_is_old_enough_for_says_so_rather_than_no_users(client: Any, auth: Auth, db: Database) -> None:
    _exposed(client, auth, db, "young", (5, 5))
    body = get_ok(client, "/v1/experiments/young/results?metric=retention_d30&cuped=true", auth("analyst"))
    assert "CUPED skipped: no user was exposed 31 or more days ago yet" in body["notes"]
    assert not any("no exposed users yet" in note for note in body["notes"])


def test_an_arm_without_conversions_has_the_same_lift_interval_sequential_or_not(client: Any, auth: Auth, db: Database) -> None:
    # 5 of 20 against 0 of 20: the delta method's variance of the lift is 0 (m_t = 0, v_t = 0), so the
    # contract's formula gives [-1, -1] either way. The sequential reading had answered null while its
    # difference, which varies in the control, had a sequence.
    control, _ = _exposed(client, auth, db, "none-converted", (20, 20))
    _convert(client, auth, "none-converted", control[:5])
    for query in ("", "?sequential=true"):
        arm = get_ok(client, f"/v1/experiments/none-converted/results{query}", auth("analyst"))["arms"][1]
        assert arm["lift"] == -1.0 and arm["lift_ci"] == [-1.0, -1.0], query
        assert arm["diff_ci"] is not None and any("normal approximation" in note for note in arm["notes"])


def test_a_user_s_value_is_the_sum_of_their_outcomes_however_they_were_batched(client: Any, auth: Auth, db: Database) -> None:
    # Added batch by batch, a double rounds each step: 1e12, 1e-5 and -1e12 had left 0 (not converted)
    # where the three in one batch, summed exactly, give 1e-5. Both arms get the same users' outcomes,
    # the control's one outcome a batch in varied orders, the treatment's each user's in one batch.
    control, treatment = _exposed(client, auth, db, "batched", (4, 4))
    client.post("/v1/experiments/batched/pause", headers=auth("editor"))  # outcomes still count while paused
    sequences = [[1e12, 1e-5, -1e12], [1e-5, 1e12, -1e12], [-1e12, 1e12, 1e-5], [0.1, 0.2, -0.3]]
    for one_at_a_time, users in ((True, control), (False, treatment)):
        for user, values in zip(users, sequences):
            outcomes = [{"outcome_id": f"{user}-{i}", "experiment": "batched", "user_id": user, "metric": "conversion", "value": v} for i, v in enumerate(values)]
            for batch in ([[o] for o in outcomes] if one_at_a_time else [outcomes]):
                post_ok(client, "/v1/outcomes", {"outcomes": batch}, auth("storefront"))
    body = get_ok(client, "/v1/experiments/batched/results", auth("analyst"))
    assert [(arm["users"], arm["total"]) for arm in body["arms"]] == [(4, 4.0), (4, 4.0)]  # math.fsum of each user's values is above 0
    daily = get_ok(client, "/v1/experiments/batched/results/daily", auth("analyst"))
    assert [arm["total"] for arm in daily["days"][-1]["arms"]] == [4.0, 4.0]
