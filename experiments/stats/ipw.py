"""Inverse propensity estimates from per-arm sums, for bandits whose allocation adapted to the data.

Each logged user i has the arm A_i, the probability p_i with which that arm was
drawn, and an outcome y_i. Over the experiment's N users:
    IPW(a)   = sum_{i in a} y_i / p_i / N                        (unbiased, high variance)
    SNIPW(a) = sum_{i in a} y_i / p_i / sum_{i in a} 1 / p_i     (self-normalised, a ratio)
and for a target allocation pi, with w_i = pi(A_i) / p_i,
    IPW = sum w_i y_i / N,  SNIPW = sum w_i y_i / sum w_i,  ESS = (sum w_i)^2 / sum w_i^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import numpy.typing as npt

from experiments.stats.proportions import z_quantile
from experiments.stats.summary import Interval, finite_or_none


@dataclass(frozen=True)
class PropensitySums:
    """One arm's users and, with w_i = 1/p_i, the sums of w, w y, w^2, w^2 y and w^2 y^2 (of y - shift)."""

    # The y sums may be taken of y - shift (the arm's mean, say): far from zero, SNIPW's spread
    # sum w^2 (y - m)^2 expanded into sums of y itself cancels every digit. 0 means plain sums of y.
    users: int
    w: float
    wy: float
    w2: float
    w2y: float
    w2y2: float
    shift: float = 0.0

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users cannot be negative, got {self.users}")

    @classmethod
    def of_values(cls, propensities: npt.ArrayLike, values: npt.ArrayLike, shift: float | None = None) -> PropensitySums:
        """The sums over one arm's users from their logged propensities and outcomes, around their mean by default."""
        p, y = np.asarray(propensities, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
        if len(p) != len(y):
            raise ValueError(f"propensities and values must have one entry per user, got {len(p)} and {len(y)}")
        if shift is None:
            shift = math.fsum(y) / len(y) if len(y) else 0.0
        w, d = 1 / p, y - shift
        return cls(len(p), math.fsum(w), math.fsum(w * d), math.fsum(w * w), math.fsum(w * w * d), math.fsum(w * w * d * d), shift)

    def scaled(self, share: float) -> PropensitySums:
        """The sums with every weight multiplied by `share` (pi(a) / p_i in place of 1 / p_i)."""
        s2 = share * share
        return PropensitySums(self.users, share * self.w, share * self.wy, s2 * self.w2, s2 * self.w2y, s2 * self.w2y2, self.shift)

    def shifted(self, shift: float) -> PropensitySums:
        """The same sums taken around another shift: y - new = (y - old) + (old - new)."""
        d = self.shift - shift
        return PropensitySums(self.users, self.w, self.wy + d * self.w, self.w2, self.w2y + d * self.w2, self.w2y2 + d * (2 * self.w2y + d * self.w2), shift)


# Below this many effective users (Kish's (sum w)^2 / sum w^2) the normal intervals come with a
# warning: a few heavily weighted users carry the estimate, and under adaptive allocation such
# intervals cover the truth well below their level (bench/ipw_coverage.py, 95 % intervals: UCB1
# 53 % under 30 effective users and 69 % from 30 to 60; Thompson sampling 37 %, 79 %, then 95 to 100 %).
FEW_EFFECTIVE_USERS = 60


@dataclass(frozen=True)
class IpwEstimate:
    """One arm's IPW and SNIPW means with normal intervals; None where undefined, with notes."""

    ipw_mean: float | None
    ipw_ci: Interval | None
    snipw_mean: float | None
    snipw_ci: Interval | None
    notes: tuple[str, ...] = ()
    effective_users: float | None = None


@dataclass(frozen=True)
class PolicyValue:
    """What a target allocation would have yielded per user, estimated from the logged assignments."""

    ipw: float | None
    ipw_ci: Interval | None
    snipw: float | None
    snipw_ci: Interval | None
    effective_sample_size: float | None
    notes: tuple[str, ...] = ()


def _interval(centre: float, variance: float, alpha: float) -> Interval | None:
    half = z_quantile(alpha) * math.sqrt(max(variance, 0.0))
    low, high = centre - half, centre + half
    return Interval(low, high) if math.isfinite(low) and math.isfinite(high) else None


# The share of sum Z^2 that sum (Z - mean)^2 must keep for the difference to hold digits worth an
# interval: below it, more than 11 of a double's 16 digits cancelled.
_DIGITS_KEPT = 1e-11


def _ipw(s: PropensitySums, total_users: int, alpha: float, notes: list[str], intervals: bool = True) -> tuple[float | None, Interval | None]:
    """sum w y / N with the variance of Z_i = w_i y_i (0 off the arm or policy) over all N users."""
    if total_users == 0:
        notes.append("no exposed users yet")
        return None, None
    sum_z = s.wy + s.shift * s.w
    mean = finite_or_none(sum_z / total_users)
    if mean is None:
        notes.append("the IPW sum is not a finite number")
        return None, None
    if not intervals:
        return mean, None
    if total_users < 2:
        notes.append("one user is not enough for an IPW interval")
        return mean, None
    if s.users == 0:  # every Z_i is 0: a zero-width interval would claim certainty about an arm nobody has tried
        notes.append("no logged user was given this arm (or the allocation's arms) yet: the IPW sum is 0 and has no interval")
        return mean, None
    # sum (Z - mean)^2 = sum Z^2 - mean sum Z. It loses digits only as sum Z^2 / sum (Z - mean)^2 grows
    # (near-equal Z far from zero); the zeros of users off the arm and varying weights keep that small.
    sum_z2 = s.w2y2 + s.shift * (2 * s.w2y + s.shift * s.w2)
    if sum_z2 == 0:  # every outcome 0 (no conversions yet): an interval of no width at 0 would claim certainty
        if sum_z == 0:
            notes.append("every logged user given this arm (or the allocation's arms) has an outcome of 0 so far, so the IPW sum "
                         "is 0 and has no interval")
        else:  # outcomes so near 0 (1e-300) that their squares count as 0
            notes.append("the outcomes are too near 0 for the spread of the IPW sum to be computed, so it has no interval")
        return mean, None
    spread = sum_z2 - sum_z * mean
    if sum_z2 > 0 and spread < _DIGITS_KEPT * sum_z2:
        # Nearly equal Z far from zero (every user weighted alike, values near 1e9): the difference keeps
        # no digit worth an interval. The self-normalised interval, taken around the mean, does.
        notes.append("the IPW interval is left out: the weighted values are nearly equal and far from zero, so their spread "
                     "cannot be computed from these sums; read the self-normalised (snipw) interval instead")
        return mean, None
    return mean, _interval(mean, spread / (total_users - 1) / total_users, alpha)


def _snipw(s: PropensitySums, alpha: float, notes: list[str], intervals: bool = True) -> tuple[float | None, Interval | None]:
    """sum w y / sum w with the delta-method variance sum w^2 (y - m)^2 / (sum w)^2."""
    if not s.w > 0:
        notes.append("no weight on any logged user, so the self-normalised mean is undefined")
        return None, None
    centred = s.wy / s.w  # the mean of y - shift
    mean = finite_or_none(centred + s.shift)
    if mean is None:
        notes.append("the self-normalised mean is not a finite number")
        return None, None
    if not intervals:
        return mean, None
    if s.users < 2:
        notes.append("one user is not enough for a self-normalised interval")
        return mean, None
    # sum w^2 (y - m)^2 expanded into the logged sums; divided by (sum w)^2 in two steps to stay finite.
    spread = s.w2y2 - 2 * centred * s.w2y + centred * centred * s.w2
    if spread <= (_ALIKE * mean) ** 2 * s.w2:  # every outcome the same (none converted, or all): no spread to give an interval
        notes.append("every logged user given this arm (or the allocation's arms) has the same outcome so far, so the "
                     "self-normalised mean has no interval")
        return mean, None
    return mean, _interval(mean, spread / s.w / s.w, alpha)


# Outcomes whose spread about their mean is within a unit or two in the last place of that mean are
# the same outcome, rounded on the way (an arm's reference mean off by some ulps leaves equal outcomes
# a constant deviation, whose computed spread is then far smaller still). A wider band, 1e-12 of the
# mean, had swallowed real spreads: 1e9 plus steps of 1e-6 are some ten ulps apart each.
_ALIKE = 2.0**-52


def _check(total_users: int, alpha: float, users: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if total_users < users:
        raise ValueError(f"total_users must count every exposed user ({users} or more), got {total_users}")


def effective_users(w: float, w2: float) -> float | None:
    """Kish's effective sample size (sum w)^2 / sum w^2: how many equally weighted users the weights are worth."""
    return finite_or_none(w / w2 * w) if w2 > 0 else None


def _few(ess: float | None, users: int, notes: list[str]) -> None:
    if ess is None or ess >= FEW_EFFECTIVE_USERS:
        return
    # Even weights leave as many effective users as users: then the arm is simply small.
    cause = (f"only {users} users" if ess >= 0.8 * users else
             f"about {ess:.0f} effective users of {users}, since a few users with small assignment probabilities carry them")
    notes.append(f"the weighted estimates rest on {cause} (under {FEW_EFFECTIVE_USERS} effective users): their normal intervals are likely "
                 "too narrow; wait for more users before deciding")


def ipw_arm(arm: PropensitySums, total_users: int, alpha: float, intervals: bool = True) -> IpwEstimate:
    """IPW and SNIPW estimates of the arm's mean outcome had everyone been given it; with `intervals`
    False (the logging policy could give an arm no chance), the estimates alone, and no note of intervals."""
    _check(total_users, alpha, arm.users)
    notes: list[str] = []
    ipw, ipw_ci = _ipw(arm, total_users, alpha, notes, intervals)
    snipw, snipw_ci = _snipw(arm, alpha, notes, intervals)
    ess = effective_users(arm.w, arm.w2)
    if intervals:
        _few(ess, arm.users, notes)
    return IpwEstimate(ipw, ipw_ci, snipw, snipw_ci, tuple(notes), ess)


def evaluate_allocation(arms: Sequence[PropensitySums], target: Sequence[float], total_users: int, alpha: float, intervals: bool = True) -> PolicyValue:
    """The value per user of assigning arm a with probability target[a] (shares normally add up to 1);
    `intervals` as for `ipw_arm`."""
    if len(target) != len(arms):
        raise ValueError(f"target must give one share per arm ({len(arms)}), got {len(target)}")
    if not all(math.isfinite(t) and t >= 0 for t in target):
        raise ValueError(f"target shares must be finite and >= 0, got {list(target)}")
    _check(total_users, alpha, sum(a.users for a in arms))
    parts = [a.scaled(t) for a, t in zip(arms, target) if t > 0]
    # One shift for all arms, near the pooled mean: the weighted mean of the arms' shifts.
    weight = math.fsum(p.w for p in parts)
    common = math.fsum(p.w * p.shift for p in parts) / weight if weight > 0 else 0.0
    parts = [p.shifted(common) for p in parts]
    pooled = PropensitySums(
        sum(p.users for p in parts),
        math.fsum(p.w for p in parts),
        math.fsum(p.wy for p in parts),
        math.fsum(p.w2 for p in parts),
        math.fsum(p.w2y for p in parts),
        math.fsum(p.w2y2 for p in parts),
        common,
    )
    notes: list[str] = []
    ipw, ipw_ci = _ipw(pooled, total_users, alpha, notes, intervals)
    snipw, snipw_ci = _snipw(pooled, alpha, notes, intervals)
    ess = effective_users(pooled.w, pooled.w2)
    if intervals:
        _few(ess, pooled.users, notes)
    return PolicyValue(ipw, ipw_ci, snipw, snipw_ci, ess, tuple(notes))


def best_arm_target(snipw_means: Sequence[float | None]) -> list[float]:
    """Share 1 for the arm with the highest SNIPW mean (the first on ties), 0 elsewhere; all 0 when none has one."""
    best: int | None = None
    for i, m in enumerate(snipw_means):
        if m is not None and math.isfinite(m) and (best is None or m > snipw_means[best]):  # type: ignore[operator]
            best = i
    return [1.0 if i == best else 0.0 for i in range(len(snipw_means))]
