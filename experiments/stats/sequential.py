"""Asymptotic confidence sequences (Waudby-Smith et al. 2023): intervals safe to check at every look.

With n users so far (arm plus control), an estimate d whose standard error is
SE, and s2 = SE^2 n, the sequence is

    d +- sqrt(s2) sqrt(2 (n rho^2 + 1) ln(sqrt(n rho^2 + 1) / alpha) / (n rho)^2),
    rho = sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / tuning),

which covers the truth at every n at once with probability 1 - alpha; `tuning`
is the sample size it is tightest at.
"""
from __future__ import annotations

import math
import sys

from scipy import optimize

from experiments.stats.summary import Interval

# Below the smallest normal float an always-valid p-value is reported as 0, as scipy's underflow to 0.
_LOG_ALPHA_MIN = math.log(sys.float_info.min)
# ln(alpha) just below 0, where the half-width approaches its limit se sqrt(1 + tuning / (2 n)).
_LOG_ALPHA_MAX = -1e-12


def _check(n: int, alpha: float, tuning: float) -> None:
    if not n >= 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not (math.isfinite(tuning) and tuning > 0):
        raise ValueError(f"tuning must be a finite number above 0, got {tuning}")


def rho(alpha: float, tuning: float) -> float:
    """sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / tuning)."""
    _check(1, alpha, tuning)
    two_log = -2 * math.log(alpha)
    return math.sqrt((two_log + math.log1p(two_log)) / tuning)


def _width_factor(n: int, log_alpha: float, tuning: float) -> float:
    """half_width / se, from ln(alpha) so that alpha below the float range still works."""
    # With a = n rho^2 the formula's s2 (n rho^2 + 1) / (n rho)^2 is se^2 (1 + 1/a), and
    # ln(sqrt(a + 1) / alpha) is log1p(a) / 2 - ln(alpha): nothing squares se or n, so nothing overflows.
    two_log = -2 * log_alpha
    a = n * (two_log + math.log1p(two_log)) / tuning
    return math.sqrt(2 * (1 + 1 / a) * (math.log1p(a) / 2 - log_alpha))


def half_width(se: float, n: int, alpha: float, tuning: float) -> float:
    """The confidence sequence's half-width at n users for an estimate with standard error se."""
    _check(n, alpha, tuning)
    if not se >= 0:
        raise ValueError(f"se must be a number >= 0, got {se}")
    return se * _width_factor(n, math.log(alpha), tuning)


def confidence_sequence(estimate: float, se: float, n: int, alpha: float, tuning: float) -> Interval:
    """estimate +- half_width: covers the truth at every look at once with probability 1 - alpha."""
    half = half_width(se, n, alpha, tuning)
    return Interval(estimate - half, estimate + half)


def always_valid_p_value(estimate: float, se: float, n: int, tuning: float) -> float:
    """The smallest alpha in (0, 1) at which the sequence excludes 0; 1.0 when none does."""
    # rho depends on alpha, so the half-width need not be monotonic in it. Numerically it falls as
    # alpha grows, towards se sqrt(1 + tuning / (2 n)) as alpha -> 1; rather than rely on that shape,
    # find the narrowest sequence by a bounded minimisation over ln(alpha), then the smallest alpha
    # whose width equals |estimate| as a root below that point.
    _check(n, 0.5, tuning)
    if not (se >= 0 and math.isfinite(se) and math.isfinite(estimate)):
        raise ValueError(f"estimate and se must be finite and se >= 0, got {estimate} and {se}")
    target = abs(estimate)
    if target == 0:
        return 1.0
    if se == 0:
        return 0.0  # a point that is not 0 excludes it at every alpha
    ratio = target / se

    def excess(log_alpha: float) -> float:
        return _width_factor(n, log_alpha, tuning) - ratio

    best = optimize.minimize_scalar(excess, bounds=(_LOG_ALPHA_MIN, _LOG_ALPHA_MAX), method="bounded", options={"xatol": 1e-10})
    argmin = float(best.x)
    if excess(argmin) >= 0:
        return 1.0
    if excess(_LOG_ALPHA_MIN) < 0:
        return 0.0
    root = optimize.brentq(excess, _LOG_ALPHA_MIN, argmin, xtol=1e-14, rtol=4 * sys.float_info.epsilon)
    return min(math.exp(root), 1.0)
