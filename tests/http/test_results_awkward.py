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
from tests.helpers import get_ok, post_ok

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


def test_a_one_user_arm_has_a_lift_but_no_lift_interval(client: Any, auth: Auth, db: Database) -> None:
    # One converted user is a proportion of 1 with p(1 - p)/n = 0: read as certainty, it had narrowed
    # the lift's interval to the treatment's spread alone.
    control, treatment = _exposed(client, auth, db, "one-user", (1, 20))
    _convert(client, auth, "one-user", control + treatment[:7])
    arm = get_ok(client, "/v1/experiments/one-user/results", auth("analyst"))["arms"][1]
    assert arm["lift"] == pytest.approx(7 / 20 - 1, rel=1e-12)
    assert arm["lift_ci"] is None
    assert any("at least 2 users" in note for note in arm["notes"])
    assert arm["diff_ci"] is not None  # Wald's interval of the difference is the contract's formula, defined here


def test_arms_constant_but_different_have_no_confidence_sequence_for_the_lift(client: Any, auth: Auth, db: Database) -> None:
    control, _ = _exposed(client, auth, db, "constant", (20, 30))
    _convert(client, auth, "constant", control)  # 20 of 20 against 0 of 30
    sequential = get_ok(client, "/v1/experiments/constant/results?sequential=true", auth("analyst"))["arms"][1]
    assert sequential["lift"] == -1.0
    assert sequential["diff_ci"] is None and sequential["lift_ci"] is None
    fixed = get_ok(client, "/v1/experiments/constant/results", auth("analyst"))["arms"][1]
    assert fixed["diff_ci"] == [-1.0, -1.0]  # Wald's zero-width interval, as the formula gives


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize("noise", [1e-5, 1e-7, 0.0])
def test_cuped_with_a_covariate_that_predicts_revenue_almost_exactly(client: Any, auth: Auth, noise: float) -> None:
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
        arms.append(assign(client, auth("storefront"), key, f"c{u}", timestamp=_iso(exposed))["arm"])
        x = float(rng.integers(1, 50))
        y = 2 * x + noise * float(rng.integers(-3, 4))
        xs.append(x)
        ys.append(y)
        events += [{"event_id": f"c{u}-before", "user_id": f"c{u}", "item_id": "i", "type": "purchase", "value": x, "timestamp": _iso(exposed - 3600)},
                   {"event_id": f"c{u}-after", "user_id": f"c{u}", "item_id": "i", "type": "purchase", "value": y, "timestamp": _iso(exposed + 3600)}]
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
        assert got["ci"] is None and "has the same value so far" in "; ".join(got["notes"])  # not [m, m]
        return
    welch = stats.ttest_ind(treatment, control, equal_var=False)
    assert got["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
    low, high = welch.confidence_interval(0.95)
    assert got["diff_ci"] == pytest.approx([low, high], rel=1e-6)
    se = np.sqrt(treatment.var(ddof=1) / len(treatment) + control.var(ddof=1) / len(control))
    assert got["chance_to_beat_control"] == pytest.approx(stats.norm.cdf((treatment.mean() - control.mean()) / se), rel=1e-6)
