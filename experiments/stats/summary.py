"""Sufficient statistics of one arm and the small result types the tests share."""
from __future__ import annotations

import math
from dataclasses import dataclass


def finite_or_none(value: float | None) -> float | None:
    """The value, or None where it is missing, infinite or NaN (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class ArmSummary:
    """Users, the sum of their values and the sum of squares; enough for every test here."""

    users: int
    total: float
    sumsq: float

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users cannot be negative, got {self.users}")

    @classmethod
    def binary(cls, users: int, conversions: int) -> "ArmSummary":
        """An arm of a binary metric: each converted user has value 1."""
        if not 0 <= conversions <= users:
            raise ValueError(f"conversions must lie in [0, users], got {conversions} of {users}")
        return cls(users, float(conversions), float(conversions))

    @property
    def mean(self) -> float | None:
        """Mean per user, None without users."""
        return self.total / self.users if self.users else None

    @property
    def variance(self) -> float | None:
        """Unbiased sample variance of per-user values, None below two users."""
        if self.users < 2:
            return None
        centred = self.sumsq - self.total * self.total / self.users
        return max(centred, 0.0) / (self.users - 1)


@dataclass(frozen=True)
class Interval:
    """A two-sided interval."""

    low: float
    high: float

    def as_list(self) -> list[float]:
        """[low, high]."""
        return [self.low, self.high]


@dataclass(frozen=True)
class TestResult:
    """A test statistic and its two-sided p-value."""

    statistic: float
    p_value: float
    df: float = math.inf
