"""Relative lift (treatment / control - 1) with a delta-method interval."""
from __future__ import annotations

import math

from experiments.stats.proportions import z_quantile
from experiments.stats.summary import ArmSummary, Interval


def mean_variance(arm: ArmSummary, binary: bool) -> float | None:
    """Variance of the arm's mean: p(1-p)/n for proportions, s^2/n otherwise."""
    if arm.mean is None:
        return None
    if binary:
        return arm.mean * (1 - arm.mean) / arm.users
    var = arm.variance
    return None if var is None else var / arm.users


def relative_lift(control: ArmSummary, treat: ArmSummary, alpha: float, binary: bool) -> tuple[float, Interval] | None:
    """(lift, interval) with Var(lift) ~ var_t / m_c^2 + m_t^2 var_c / m_c^4; None if undefined."""
    mc, mt = control.mean, treat.mean
    vc, vt = mean_variance(control, binary), mean_variance(treat, binary)
    if mc is None or mt is None or vc is None or vt is None or mc == 0:
        return None
    lift = mt / mc - 1
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    z = z_quantile(alpha)
    return lift, Interval(lift - z * se, lift + z * se)
