"""Continuous metrics: Welch's t-test, the t interval of a mean and of a difference."""
from __future__ import annotations

import math

from scipy import stats as sps

from experiments.stats.summary import ArmSummary, Interval, TestResult


def _welch(control: ArmSummary, treat: ArmSummary) -> tuple[float, float, float] | None:
    """(difference, standard error, Welch-Satterthwaite df), or None when undefined."""
    vc, vt, diff = control.variance, treat.variance, treat.mean_difference(control)
    if vc is None or vt is None or diff is None:
        return None
    ac, at = vc / control.users, vt / treat.users
    se2 = ac + at
    if se2 <= 0:
        return None
    # As shares of se2: squaring variances of the mean near 1e-161 and below gave 0 / 0.
    rc, rt = ac / se2, at / se2
    df = 1.0 / (rc * rc / (control.users - 1) + rt * rt / (treat.users - 1))
    return diff, math.sqrt(se2), df


def welch_t(control: ArmSummary, treat: ArmSummary) -> TestResult | None:
    """Two-sided Welch t-test of mean_treat - mean_control; None when undefined."""
    parts = _welch(control, treat)
    if parts is None:
        return None
    diff, se, df = parts
    t = diff / se
    return TestResult(t, float(2 * sps.t.sf(abs(t), df)), df)


def welch_difference(control: ArmSummary, treat: ArmSummary, alpha: float) -> Interval | None:
    """Interval of mean_treat - mean_control with the Welch standard error and df."""
    parts = _welch(control, treat)
    if parts is None:
        return None
    diff, se, df = parts
    q = float(sps.t.isf(alpha / 2, df))
    return Interval(diff - q * se, diff + q * se)


def t_interval(arm: ArmSummary, alpha: float) -> Interval | None:
    """The t interval of one arm's mean; None below two users."""
    var = arm.variance
    if var is None or arm.mean is None:
        return None
    half = float(sps.t.isf(alpha / 2, arm.users - 1)) * math.sqrt(var / arm.users)
    return Interval(arm.mean - half, arm.mean + half)
