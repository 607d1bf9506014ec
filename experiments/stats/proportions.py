"""Binary metrics: pooled two-proportion z-test, Wilson interval, Wald interval of the difference."""
from __future__ import annotations

import math

from scipy import stats as sps

from experiments.stats.summary import Interval, TestResult


def z_quantile(alpha: float) -> float:
    """The two-sided normal quantile for level 1 - alpha."""
    return float(sps.norm.isf(alpha / 2))


def two_proportion_z(x_control: int, n_control: int, x_treat: int, n_treat: int) -> TestResult | None:
    """Two-sided z-test of p_treat - p_control with the pooled variance; None when undefined."""
    if n_control == 0 or n_treat == 0:
        return None
    pooled = (x_control + x_treat) / (n_control + n_treat)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treat))
    if se == 0:
        return None
    z = (x_treat / n_treat - x_control / n_control) / se
    return TestResult(z, float(2 * sps.norm.sf(abs(z))))


def wilson(x: int, n: int, alpha: float) -> Interval | None:
    """Wilson score interval for a proportion; None without observations."""
    if n == 0:
        return None
    z = z_quantile(alpha)
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0 or n successes the bound is exactly 0 or 1; rounding would put it a hair outside.
    low = 0.0 if x == 0 else max(0.0, centre - half)
    high = 1.0 if x == n else min(1.0, centre + half)
    return Interval(low, high)


def wald_difference(x_control: int, n_control: int, x_treat: int, n_treat: int, alpha: float) -> Interval | None:
    """Unpooled Wald interval of p_treat - p_control; None without observations."""
    if n_control == 0 or n_treat == 0:
        return None
    pc, pt = x_control / n_control, x_treat / n_treat
    se = math.sqrt(pc * (1 - pc) / n_control + pt * (1 - pt) / n_treat)
    z = z_quantile(alpha)
    return Interval(pt - pc - z * se, pt - pc + z * se)
