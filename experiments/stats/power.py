"""Required users per arm to detect a given absolute effect with a two-sided test."""
from __future__ import annotations

import math

from scipy import stats as sps


def _check(alpha: float, power: float, mde: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    if not mde > 0:
        raise ValueError(f"the minimum detectable effect must be above 0, got {mde}")


def users_per_arm_proportion(baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm to detect baseline -> baseline + mde with the pooled z-test."""
    _check(alpha, power, mde)
    p1, p2 = baseline, baseline + mde
    if not (0 < p1 < 1 and 0 < p2 < 1):
        raise ValueError(f"baseline and baseline + mde must lie in (0, 1), got {p1} and {p2}")
    za, zb = sps.norm.isf(alpha / 2), sps.norm.isf(1 - power)
    pbar = (p1 + p2) / 2
    n = (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / mde**2
    return math.ceil(n)


def users_per_arm_mean(std: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm to detect a shift of `mde` in a mean with standard deviation `std` (normal approximation)."""
    _check(alpha, power, mde)
    if not std > 0:
        raise ValueError(f"the standard deviation must be above 0, got {std}")
    za, zb = sps.norm.isf(alpha / 2), sps.norm.isf(1 - power)
    return math.ceil(2 * (std * (za + zb) / mde) ** 2)
