"""CUPED: subtract what each user's pre-exposure behaviour predicts, from per-arm centred moments.

theta = sum((x - xbar)(y - ybar)) / sum((x - xbar)^2) over all users of all arms,
and y' = y - theta (x - xbar) with xbar over all users. The pooled sums come
from the within-arm ones plus the between-arm terms (the parallel-axis
theorem), so no sum is ever taken around zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import numpy.typing as npt

from experiments.stats.summary import ArmSummary, mean_rounding, two_sum


@dataclass(frozen=True)
class CupedArm:
    """One arm's users, the means of x (pre-period) and y, and sums centred on the arm's own means."""

    users: int
    mean_x: float
    mean_y: float
    m2_x: float  # sum((x - xbar_a)^2)
    m2_y: float  # sum((y - ybar_a)^2)
    c_xy: float  # sum((x - xbar_a)(y - ybar_a))
    # What each mean's rounding to a double left out (see ArmSummary.residual): far from zero the arms'
    # means differ in digits an ulp drops (1.5e-5 at 1e11), and theta and the adjusted means use those differences.
    residual_x: float = 0.0
    residual_y: float = 0.0

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users cannot be negative, got {self.users}")

    @classmethod
    def of_values(cls, x: npt.ArrayLike, y: npt.ArrayLike) -> CupedArm:
        """An arm from per-user covariates and outcomes, in two passes."""
        xs, ys = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
        if len(xs) != len(ys):
            raise ValueError(f"x and y must have one value per user, got {len(xs)} and {len(ys)}")
        n = len(xs)
        if n == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        mx, my = math.fsum(xs) / n, math.fsum(ys) / n
        dx, dy = xs - mx, ys - my
        # Corrected two-pass sums: the second term removes the error of each rounded mean.
        sx, sy = math.fsum(dx), math.fsum(dy)
        return cls(n, mx, my, max(math.fsum(dx * dx) - sx * sx / n, 0.0), max(math.fsum(dy * dy) - sy * sy / n, 0.0), math.fsum(dx * dy) - sx * sy / n,
                   mean_rounding(xs, mx), mean_rounding(ys, my))


@dataclass(frozen=True)
class CupedResult:
    """theta, the share of the outcome's variance removed, and each arm's adjusted y' as centred moments."""

    theta: float | None
    variance_reduction: float | None
    adjusted: tuple[ArmSummary, ...]
    note: str | None = None


@dataclass(frozen=True)
class _Pooled:
    """Sums over all users; each arm's mean of x as an offset from xbar, taken without rounding at the means' scale."""

    sxx: float
    syy: float
    sxy: float
    x_offsets: tuple[float, ...]


def _pooled(arms: Sequence[CupedArm]) -> _Pooled:
    """Within-arm sums plus n_a times the products of each arm's offsets from the pooled means."""
    # Offsets are taken from the first arm's means first: those differences are exact (the means are
    # close), so far from zero xbar_a - xbar keeps its digits where n_a * xbar_a, rounded at 1e12, would not.
    present = [a for a in arms if a.users > 0]
    total = sum(a.users for a in present)
    first = present[0]
    dx = [(a.mean_x - first.mean_x) + (a.residual_x - first.residual_x) for a in arms]
    dy = [(a.mean_y - first.mean_y) + (a.residual_y - first.residual_y) for a in arms]
    shift_x = math.fsum(a.users * d for a, d in zip(arms, dx) if a.users) / total
    shift_y = math.fsum(a.users * d for a, d in zip(arms, dy) if a.users) / total
    ox = [d - shift_x for d in dx]
    oy = [d - shift_y for d in dy]
    live = [(a, x, y) for a, x, y in zip(arms, ox, oy) if a.users]
    return _Pooled(
        math.fsum(a.m2_x + a.users * x * x for a, x, _ in live),
        math.fsum(a.m2_y + a.users * y * y for a, _, y in live),
        math.fsum(a.c_xy + a.users * x * y for a, x, y in live),
        tuple(ox),
    )


def _unadjusted(arms: Sequence[CupedArm]) -> tuple[ArmSummary, ...]:
    return tuple(ArmSummary.of_moments(a.users, a.mean_y, a.m2_y) for a in arms)


# Relative size, against the terms it is computed from, below which an adjusted second moment is rounding.
_ROUNDING = 1e-12
# Below this relative size the adjusted second moment has lost more than 3 of its digits to cancellation:
# a covariate that predicts y almost exactly (correlation above about 0.999). Then it is summed anew over
# the users' own y' when the caller can (`ExactSpread`), and only a spread at the rounding of y' itself is 0.
_CANCELLING = 1e-3
# Each arm's sum of (y' - its mean)^2 for a given theta, summed over the users' values themselves.
ExactSpread = Callable[[float], Sequence[float]]
# The pooled theta minimises the variance of all users together, not of each arm: one outlier (a single
# 1e12 purchase by a user who had bought before) can set a theta that multiplies every other arm's
# spread, and shifts its mean, a million-fold. No adjustment that widens an arm's standard error this
# many times is worth reporting; on ordinary data the pooled theta changes each one by a few per cent.
MAX_WIDENING = 10.0


def _widening(arms: Sequence[CupedArm], adjusted: Sequence[ArmSummary]) -> float:
    """The most that y' multiplies an arm's own standard error; inf when the outcome varies in no arm.

    An arm whose outcome does not vary (no conversions yet) is measured against the least spread among
    the arms where it does, so that rare conversions early in a test do not switch CUPED off.
    """
    spreads = [a.m2_y / (a.users - 1) for a in arms if a.users > 1 and a.m2_y > 0]
    floor = min(spreads, default=0.0)
    worst = 1.0
    for arm, new in zip(arms, adjusted):
        if arm.users < 2:
            continue  # no standard error either way
        before = arm.m2_y / (arm.users - 1) or floor
        after = (new.m2 or 0.0) / (arm.users - 1)
        if after > before:
            worst = max(worst, math.sqrt(after / before) if before > 0 else math.inf)
    return worst


def _adjusted_m2(arms: Sequence[CupedArm], theta: float, exact_spread: ExactSpread | None) -> list[float]:
    """Each arm's sum of squared deviations of y' from its mean.

    From the centred moments, m2_y - 2 theta c_xy + theta^2 m2_x, unless that cancels: then from
    `exact_spread` where given, else 0 when what is left is the rounding of the three terms.
    """
    m2s = [a.m2_y - 2 * theta * a.c_xy + theta * theta * a.m2_x for a in arms]
    scales = [a.m2_y + theta * theta * a.m2_x for a in arms]
    cancelled = [a.users > 1 and scale > 0 and m2 <= _CANCELLING * scale for a, m2, scale in zip(arms, m2s, scales)]
    if exact_spread is not None and any(cancelled):
        exact = list(exact_spread(theta))
        out = []
        for a, m2, gone, new in zip(arms, m2s, cancelled, exact):
            if not gone:
                out.append(m2)
                continue
            # y' = y - theta x carries a rounding of about 1e-16 of |y| + |theta x| per user.
            magnitude = a.m2_y + a.users * a.mean_y**2 + theta * theta * (a.m2_x + a.users * a.mean_x**2)
            out.append(new if new > _ROUNDING**2 * magnitude else 0.0)
        return out
    # A covariate that predicts y exactly leaves only the rounding of these three terms: no variance,
    # so no interval, rather than one a few ulps wide.
    return [0.0 if m2 <= _ROUNDING * scale else m2 for m2, scale in zip(m2s, scales)]


def cuped(arms: Sequence[CupedArm], exact_spread: ExactSpread | None = None) -> CupedResult:
    """theta over all users, and every arm's y' = y - theta (x - xbar); theta None (and y unchanged, with a note)
    when it is undefined, or when it would make some arm's figures far less precise.

    `exact_spread` sums an arm's spread of y' over its users when the centred moments cannot give it
    (see `_adjusted_m2`); without it such a spread is rounded to 0 once it is at the moments' rounding."""
    if sum(a.users for a in arms) == 0:
        return CupedResult(None, None, _unadjusted(arms), "no exposed users yet")
    pooled = _pooled(arms)
    sxx, syy, sxy = pooled.sxx, pooled.syy, pooled.sxy
    if not sxx > 0:
        return CupedResult(None, None, _unadjusted(arms), "no pre-period variation: every user's covariate is the same")
    theta = sxy / sxx
    if not math.isfinite(theta):
        return CupedResult(None, None, _unadjusted(arms), "theta is not a finite number: the covariate barely varies next to the outcome")
    adjusted = []
    for a, offset, m2 in zip(arms, pooled.x_offsets, _adjusted_m2(arms, theta, exact_spread)):
        if a.users == 0:
            adjusted.append(ArmSummary.of_moments(0, 0.0, 0.0))
            continue
        centre, dropped = two_sum(a.mean_y, -theta * offset)
        adjusted.append(ArmSummary.of_moments(a.users, centre, m2, a.residual_y + dropped))
    # With the pooled least-squares theta, 1 - Syy'/Syy = Sxy^2 / (Sxx Syy): the squared pooled correlation, with no cancellation.
    if syy > 0:
        reduction: float | None = min(max((sxy / sxx) * (sxy / syy), 0.0), 1.0)
        note = None
    else:
        reduction, note = None, "the outcome does not vary, so there is no variance to reduce"
    widening = _widening(arms, adjusted)
    if widening > MAX_WIDENING:
        removed = "" if reduction is None else f" while removing {reduction:.2%} of the variance overall"
        why = ("would give spread to arms whose outcome does not vary at all" if math.isinf(widening)
               else f"would widen an arm's standard error {widening:,.0f}-fold{removed}; an extreme value in the outcome or its pre-period usually causes this")
        return CupedResult(None, None, _unadjusted(arms), f"theta {theta:.4g} {why}")
    return CupedResult(theta, reduction, tuple(adjusted), note)
