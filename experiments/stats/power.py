"""Required users per arm to detect a given effect with a two-sided test, and the planner built on it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from scipy import stats as sps

from experiments.definitions import METRIC_KINDS, AnalysisSettings
from experiments.numbers import finite_number
from experiments.stats.sequential import half_width

# No experiment enrols more people than there are; a larger answer means the effect is undetectable.
MAX_USERS_PER_ARM = 10**12


def _check(alpha: float, power: float, mde: float) -> None:
    """Each message begins with the field it names, as the planning endpoint reports it."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must lie in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power: must lie in (0, 1), got {power}")
    if not mde > 0:
        raise ValueError(f"mde: must be above 0, got {mde}")


def _quantiles(alpha: float, power: float) -> tuple[float, float]:
    """z(1 - alpha/2) and z(power) as plain floats, so that overflow shows as inf rather than a warning."""
    # z(power) from power itself: 1 - power keeps few of a small power's digits (1e-12 lost a tenth of its n).
    return float(sps.norm.isf(alpha / 2)), float(sps.norm.ppf(power))


def _rates_spread(p1: float, p2: float, za: float, zb: float) -> float:
    """The pooled z-test's numerator for rates p1 and p2: its variance under no effect, and the unpooled one under the effect."""
    pbar = (p1 + p2) / 2
    return za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))


def _users(spread: float, mde: float, alpha: float, power: float, scale: float = 1.0) -> int:
    """ceil(scale (spread / mde)^2), refusing answers that are meaningless or beyond any population."""
    if not spread > 0:  # the test reaches that power with no users at all; NaN when both quantiles are infinite
        raise ValueError(f"power must exceed alpha / 2 ({alpha / 2:g}), got {power}")
    ratio = spread / mde  # a float division overflows to inf, where ** would raise
    n = scale * ratio * ratio
    if not n <= MAX_USERS_PER_ARM:
        raise ValueError(f"more than {MAX_USERS_PER_ARM:.0e} users per arm would be needed; the effect {mde} is too small to detect")
    return math.ceil(n)


def users_per_arm_proportion(baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm to detect baseline -> baseline + mde with the pooled z-test."""
    _check(alpha, power, mde)
    p1, p2 = baseline, baseline + mde
    if not (0 < p1 < 1 and 0 < p2 < 1):
        raise ValueError(f"baseline and baseline + mde must lie in (0, 1), got {p1} and {p2}")
    return _users(_rates_spread(p1, p2, *_quantiles(alpha, power)), mde, alpha, power)


def users_per_arm_mean(std: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm to detect a shift of `mde` in a mean with standard deviation `std` (normal approximation)."""
    _check(alpha, power, mde)
    if not std > 0:
        raise ValueError(f"the standard deviation must be above 0, got {std}")
    za, zb = _quantiles(alpha, power)
    return _users(std * (za + zb), mde, alpha, power, scale=2.0)


# The planner's ceiling on total users: far beyond any population, still exact as a JSON number.
MAX_PLAN_USERS = 10**15
# The options, checked at run time: the planner takes plain strings straight from a request.
MdeType = Literal["absolute", "relative"]
PlanCorrection = Literal["holm", "bonferroni", "none"]
MDE_TYPES: tuple[MdeType, ...] = get_args(MdeType)
PLAN_CORRECTIONS: tuple[PlanCorrection, ...] = get_args(PlanCorrection)
# What a plan assumes for a field its question leaves out: the API's defaults, and the console's.
PLAN_DEFAULTS: dict[str, Any] = {"mde_type": "absolute", "alpha": 0.05, "power": 0.8, "arms": 2, "correction": "holm"}


@dataclass(frozen=True)
class Plan:
    """Users per arm and in all, days at the given traffic, and the alpha each comparison is sized at."""

    users_per_arm: int
    total_users: int
    days: int | None
    alpha_per_test: float
    note: str | None = None
    # The same power when the results are read with sequential intervals (`sequential_users_per_arm`);
    # None where no population could supply it.
    sequential_users_per_arm: int | None = None
    sequential_total_users: int | None = None
    sequential_days: int | None = None


def _number(name: str, value: object) -> float:
    """A finite float, or ValueError naming the field."""
    if not finite_number(value):
        raise ValueError(f"{name}: must be a finite number, got {value if isinstance(value, float) else repr(value)[:40]}")
    return float(value)


def _one_of(name: str, value: object, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name}: must be one of {', '.join(options)}, got {value!r}")


def _plan_users(spread: float, effect: float, scale: float, power: float) -> int:
    """ceil(scale (spread / effect)^2), refusing what no population could supply."""
    if not spread > 0:  # a binary metric's unequal variances can leave a low power's numerator at or below 0
        raise ValueError(f"power: {power:g} is so low that a test of these rates would reach it with no users at all")
    if not effect > 0:  # a relative mde whose product with the baseline underflows
        raise ValueError(f"mde: more than {MAX_PLAN_USERS:.0e} users per arm would be needed; the effect is too small to detect")
    ratio = spread / effect
    n = scale * ratio * ratio
    if not n <= MAX_PLAN_USERS:
        raise ValueError(f"mde: more than {MAX_PLAN_USERS:.0e} users per arm would be needed; the effect is too small to detect")
    return max(math.ceil(n), 1)


# The experiments' default `sequential_tuning`: the size at which their confidence sequences are tightest.
SEQUENTIAL_TUNING = AnalysisSettings().sequential_tuning


def sequential_users_per_arm(variance_sum: float, effect: float, alpha: float, power: float, tuning: float = SEQUENTIAL_TUNING) -> int:
    """Users per arm for the confidence sequence of a difference to exclude 0 at that size with probability `power`.

    With n users in the arm and n in the control the difference's standard error is sqrt(variance_sum / n),
    and the sequence's half-width that times W, its width factor at 2n users (`sequential.half_width`); it
    excludes 0 with probability about Phi(effect / se - W). So n is the smallest with
    effect sqrt(n / variance_sum) >= W(2n) + z(power). A look before n can only find the effect sooner, so
    the power over the whole test is at least `power`. With the same variance the fixed-horizon size is a
    lower bound (the sequence is the wider interval at every n), but a rate's fixed size takes the pooled
    variance under no effect, so at a tiny alpha or with rates far apart it can come out a few users larger.
    """
    zb = float(sps.norm.ppf(power))
    if not variance_sum > 0:
        raise ValueError("variance_sum: must be above 0")

    def enough(n: int) -> bool:
        return effect * math.sqrt(n / variance_sum) >= half_width(1.0, 2 * n, alpha, tuning) + zb

    low, high = 0, 1  # low: not enough (or 0)
    while not enough(high):
        if high >= MAX_PLAN_USERS:
            raise ValueError(f"mde: more than {MAX_PLAN_USERS:.0e} users per arm would be needed with sequential intervals; the effect is too small to detect")
        low, high = high, min(2 * high, MAX_PLAN_USERS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def plan_sample_size(
    metric_kind: str,
    baseline: float,
    sd: float | None,
    mde: float,
    mde_type: str,
    alpha: float,
    power: float,
    arms: int,
    correction: str,
    daily_users: float | None,
) -> Plan:
    """Users per arm for a two-sided test of each treatment against the control; ValueError names an impossible field."""
    mde, alpha, power, arms = _checked_plan(metric_kind, mde_type, correction, mde, alpha, power, arms, daily_users)
    comparisons = arms - 1
    split = comparisons > 1 and correction != "none"
    # Holm is sized as Bonferroni: its first step tests at alpha / k, so this is the conservative answer.
    a = alpha / comparisons if split else alpha
    if not power > a / 2:  # the test rejects that often with no users at all: the formula's square would hide the sign
        raise ValueError(f"power: must exceed alpha_per_test / 2 ({a / 2:g}), got {power}")
    za, zb = _quantiles(a, power)
    per_arm, variance_sum, effect = _fixed_horizon(metric_kind, mde_type, baseline, sd, mde, za, zb, power)
    try:
        sequential: int | None = sequential_users_per_arm(variance_sum, effect, a, power)
    except ValueError:  # beyond any population read sequentially, though not at a fixed horizon
        sequential = None
    total = per_arm * arms
    if total > MAX_PLAN_USERS:
        raise ValueError(f"mde: {int(total):,} users in all would be needed, more than {MAX_PLAN_USERS:,}; the effect is too small to detect")
    days = None
    if daily_users is not None:
        span = total / daily_users
        if not span <= MAX_PLAN_USERS:
            raise ValueError(f"daily_users: {daily_users} a day would take more than {MAX_PLAN_USERS:.0e} days")
        days = math.ceil(span)
    note = f"alpha {alpha:g} split over {comparisons} comparisons ({correction}): each is sized at {a:g}" if split else None
    if sequential is not None and sequential * arms > MAX_PLAN_USERS:
        sequential = None
    sequential_total = sequential * arms if sequential is not None else None
    sequential_days = None
    if sequential_total is not None and daily_users is not None and sequential_total / daily_users <= MAX_PLAN_USERS:
        sequential_days = math.ceil(sequential_total / daily_users)
    return Plan(per_arm, total, days, a, note, sequential, sequential_total, sequential_days)


def _checked_plan(
    metric_kind: str, mde_type: str, correction: str, mde: float, alpha: float, power: float, arms: int, daily_users: float | None,
) -> tuple[float, float, float, int]:
    """The plan's settings that need no baseline, checked: (mde, alpha, power, arms)."""
    _one_of("metric_kind", metric_kind, METRIC_KINDS)
    _one_of("mde_type", mde_type, MDE_TYPES)
    _one_of("correction", correction, PLAN_CORRECTIONS)
    mde, alpha, power = (_number(n, v) for n, v in (("mde", mde), ("alpha", alpha), ("power", power)))
    _check(alpha, power, mde)
    if isinstance(arms, bool) or not isinstance(arms, (int, float)) or not float(arms).is_integer() or arms < 2:
        raise ValueError(f"arms: must be a whole number of at least 2, got {arms!r}")
    if daily_users is not None and not _number("daily_users", daily_users) > 0:
        raise ValueError(f"daily_users: must be above 0, got {daily_users}")
    return mde, alpha, power, int(arms)


def _fixed_horizon(
    metric_kind: str, mde_type: str, baseline: float, sd: float | None, mde: float, za: float, zb: float, power: float,
) -> tuple[int, float, float]:
    """Users per arm at a fixed horizon, with the variance sum and the effect (both in the same units) a sequential plan reads."""
    if metric_kind == "binary" or mde_type == "relative":
        baseline = _number("baseline", baseline)
    effect = mde * baseline if mde_type == "relative" else mde
    if metric_kind == "binary":
        p1, p2 = baseline, baseline + effect
        if not 0 < p1 < 1:
            raise ValueError(f"baseline: a rate must lie in (0, 1), got {p1}")
        if not 0 < p2 < 1:
            target = f"baseline x (1 + mde) = {p2:.6g}" if mde_type == "relative" else f"baseline + mde = {p2:.6g}"
            raise ValueError(f"mde: the rate to detect must lie in (0, 1), got {target}")
        spread = _rates_spread(p1, p2, za, zb)
        # The mde itself, not p2 - p1: near 1 that difference keeps few of its digits.
        per_arm = _plan_users(spread, effect, 1.0, power)
        return per_arm, p1 * (1 - p1) + p2 * (1 - p2), abs(effect)  # the unpooled variance the results' sequences use
    if sd is None:
        raise ValueError("sd: the standard deviation is required for a continuous metric")
    if not _number("sd", sd) > 0:
        raise ValueError(f"sd: must be above 0, got {sd}")
    if mde_type == "relative" and baseline == 0:
        raise ValueError(f"baseline: a relative mde needs a baseline other than 0, got {baseline}")
    per_arm = _plan_users(sd * (za + zb), abs(effect), 2.0, power)
    # In units of sd: the size depends on effect / sd alone, and sd squared underflows to 0 below 1e-162.
    return per_arm, 2.0, abs(effect) / sd
