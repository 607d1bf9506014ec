"""Sufficient statistics of one arm and the small result types the tests share."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


def finite_or_none(value: float | None) -> float | None:
    """The value, or None where it is missing, infinite or NaN (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


def two_sum(a: float, b: float) -> tuple[float, float]:
    """a + b as a double, and exactly what its rounding dropped (Knuth's two-sum)."""
    total = a + b
    kept = total - a
    return total, (a - (total - kept)) + (b - kept)


def mean_rounding(values: npt.NDArray[np.float64], mean: float) -> float:
    """What the double `mean` leaves out of the values' exact mean: their exact sum less n times it, over n."""
    return math.fsum([*values.tolist(), *([-mean] * len(values))]) / len(values)


@dataclass(frozen=True)
class ArmSummary:
    """Users, the sum of their values and the sum of squares, with the centred moments when known."""

    # `ArmSummary(users, total, sumsq)` keeps its meaning, but sumsq - total^2/n cancels catastrophically
    # far from zero (1e9 + a spread of 10 loses every digit), so `of_moments` and `of_values` also carry
    # m2 = sum((v - mean)^2) and the mean itself, and `mean` and `variance` prefer them.
    users: int
    total: float
    sumsq: float
    m2: float | None = None
    centre: float | None = None  # the mean as measured; total / users would round it once more
    # What the double `centre` could not hold of the mean as measured (mean = centre + residual): far
    # from zero, two arms' means differ in digits that rounding each to a double drops (an ulp of 1e11
    # is 1.5e-5), and `mean_difference` takes them back.
    residual: float = 0.0

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users cannot be negative, got {self.users}")

    @classmethod
    def binary(cls, users: int, conversions: int) -> ArmSummary:
        """An arm of a binary metric: each converted user has value 1."""
        if not 0 <= conversions <= users:
            raise ValueError(f"conversions must lie in [0, users], got {conversions} of {users}")
        # x (n - x) / n is exact enough; x - x^2/n loses digits when nearly everyone converts.
        m2 = conversions * (users - conversions) / users if users else 0.0
        return cls(users, float(conversions), float(conversions), m2)

    @classmethod
    def of_moments(cls, users: int, mean: float, m2: float, residual: float = 0.0) -> ArmSummary:
        """An arm from its users, mean and m2 = sum((v - mean)^2), as a two-pass query computes them;
        `residual`, what the mean's rounding to a double left out, where it is known."""
        if users == 0:
            return cls(0, 0.0, 0.0, 0.0)
        return cls(users, users * mean, m2 + users * mean * mean, m2, mean, residual)

    @classmethod
    def of_values(cls, values: npt.ArrayLike) -> ArmSummary:
        """An arm from per-user values, in two passes with an exactly rounded sum."""
        v = np.asarray(values, dtype=float).ravel()
        n = len(v)
        if n == 0:
            return cls(0, 0.0, 0.0, 0.0)
        mean = math.fsum(v) / n
        d = v - mean
        # The corrected two-pass sum: subtracting (sum d)^2 / n removes the error of the rounded mean.
        s = math.fsum(d)
        m2 = max(math.fsum(d * d) - s * s / n, 0.0)
        # What the rounded mean dropped (the rounded deviations' own sum, s, is noise when values dwarf
        # their mean: 1e16 and -1e16 + 2 beside 1 and 3).
        return cls.of_moments(n, mean, m2, mean_rounding(v, mean))

    @property
    def mean(self) -> float | None:
        """Mean per user, None without users."""
        if not self.users:
            return None
        return self.centre if self.centre is not None else self.total / self.users

    def mean_difference(self, control: ArmSummary) -> float | None:
        """This arm's mean minus the control's, None unless both have users.

        The means' difference is exact where they lie within a factor of 2 of each other (Sterbenz),
        which is where rounding each had cost the most, and the residuals add what the rounding dropped.
        """
        if self.mean is None or control.mean is None:
            return None
        return (self.mean - control.mean) + (self.residual - control.residual)

    @property
    def variance(self) -> float | None:
        """Unbiased sample variance of per-user values, None below two users."""
        if self.users < 2:
            return None
        centred = self.m2 if self.m2 is not None else self.sumsq - self.total * self.total / self.users
        return max(centred, 0.0) / (self.users - 1)


@dataclass(frozen=True)
class Interval:
    """A two-sided interval."""

    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    """A test statistic and its two-sided p-value."""

    statistic: float
    p_value: float
    df: float = math.inf
