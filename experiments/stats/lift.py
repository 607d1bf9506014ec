"""Relative lift (treatment / control - 1) with a delta-method interval."""
from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.stats.proportions import z_quantile
from experiments.stats.summary import ArmSummary, Interval


@dataclass(frozen=True)
class Lift:
    """The relative lift and its delta-method standard error, or None and why."""

    value: float | None
    se: float | None
    note: str | None = None


def mean_variance(arm: ArmSummary, binary: bool) -> float | None:
    """Variance of the arm's mean: p(1-p)/n for proportions, s^2/n otherwise."""
    if arm.mean is None:
        return None
    if binary:
        return arm.mean * (1 - arm.mean) / arm.users
    var = arm.variance
    return None if var is None else var / arm.users


def lift_estimate(control: ArmSummary, treat: ArmSummary, binary: bool) -> Lift:
    """m_t / m_c - 1 with Var ~ (v_t + (m_t/m_c)^2 v_c) / m_c^2, which never forms m_c^4."""
    mc, mt, diff = control.mean, treat.mean, treat.mean_difference(control)
    if mc is None or mt is None or diff is None:
        return Lift(None, None, "lift needs a mean in both arms")
    if mc == 0:
        return Lift(None, None, "lift is undefined while the control's mean is 0")
    ratio = mt / mc
    # The difference over the control where it is finite, not m_t / m_c - 1, which far from zero keeps
    # only the digits the means' ratio has above 1 (at 1e11 with a spread of 1e-2, about four).
    lift = diff / mc
    if not math.isfinite(lift):
        lift = ratio - 1
    if not math.isfinite(ratio):
        return Lift(None, None, "lift is not a finite number: the control's mean is too close to 0 next to the treatment's")
    vc, vt = mean_variance(control, binary), mean_variance(treat, binary)
    if vc is None or vt is None:  # one user in an arm of a continuous metric: the lift is known, its spread is not
        return Lift(lift, None, "the lift has no interval: an arm's variance needs at least 2 users")
    # hypot and one division by |m_c| keep every step finite wherever the answer is.
    se = math.hypot(math.sqrt(vt), ratio * math.sqrt(vc)) / abs(mc)
    if not math.isfinite(se):
        return Lift(lift, None, "the lift has no interval: its standard error is not a finite number")
    return Lift(lift, se)


def relative_lift(control: ArmSummary, treat: ArmSummary, alpha: float, binary: bool) -> tuple[float, Interval] | None:
    """(lift, normal interval at level 1 - alpha); None if undefined or not finite."""
    lift = lift_estimate(control, treat, binary)
    if lift.value is None or lift.se is None:
        return None
    half = z_quantile(alpha) * lift.se
    interval = Interval(lift.value - half, lift.value + half)
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return None
    return lift.value, interval
