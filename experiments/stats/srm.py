"""Sample-ratio mismatch: do the exposures follow the configured weights?"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats as sps

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """Chi-square goodness of fit of observed exposures against the weights; `statistic` is None when infinite."""

    statistic: float | None
    p_value: float
    observed: list[int]
    expected: list[float]
    mismatch: bool


def _term(observed: int, expected: float) -> float:
    """One arm's share of the statistic; an arm expected to get no one adds nothing until it gets someone."""
    if expected > 0:
        return (observed - expected) ** 2 / expected
    return 0.0 if observed == 0 else math.inf


def sample_ratio_mismatch(observed: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD) -> SrmResult | None:
    """Pearson's chi-square with K - 1 degrees of freedom; None without exposures."""
    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return None
    # Shares of the largest weight stay finite and exact for any positive weights, however
    # large or small, so that no expected count becomes NaN; a negligible weight gives 0.
    top = max(weights)
    shares = [w / top for w in weights]
    share_sum = sum(shares)
    expected = [total * s / share_sum for s in shares]
    statistic = sum(_term(o, e) for o, e in zip(observed, expected))
    p = float(sps.chi2.sf(statistic, len(observed) - 1))
    return SrmResult(statistic if math.isfinite(statistic) else None, p, list(observed), expected, p < threshold)
