"""Sample-ratio mismatch: do the exposures follow the configured weights?"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from scipy import stats as sps

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """Chi-square goodness of fit of observed exposures against the weights."""

    statistic: float
    p_value: float
    observed: list[int]
    expected: list[float]
    mismatch: bool


def sample_ratio_mismatch(observed: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD) -> SrmResult | None:
    """Pearson's chi-square with K - 1 degrees of freedom; None without exposures."""
    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return None
    weight_sum = float(sum(weights))
    expected = [total * w / weight_sum for w in weights]
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    p = float(sps.chi2.sf(statistic, len(observed) - 1))
    return SrmResult(statistic, p, list(observed), expected, p < threshold)
