"""Every arm against the control: the figures `/results` reports, with reasons where undefined.

Degenerate data never raises and never yields NaN: a figure that cannot be
computed is None and the arm's `notes` say why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from experiments.stats.bayes import beta_chance_to_beat, normal_chance_to_beat
from experiments.stats.corrections import Correction, adjust
from experiments.stats.lift import relative_lift
from experiments.stats.means import t_interval, welch_difference, welch_t
from experiments.stats.proportions import two_proportion_z, wald_difference, wilson
from experiments.stats.summary import ArmSummary, Interval, finite_or_none

Kind = Literal["binary", "continuous"]
TESTS = {"binary": "two_proportion_z", "continuous": "welch_t"}


@dataclass(frozen=True)
class ArmResult:
    """One arm's figures; comparison fields are None for the control."""

    arm: str
    users: int
    total: float
    mean: float | None
    ci: Interval | None
    diff: float | None = None
    diff_ci: Interval | None = None
    lift: float | None = None
    lift_ci: Interval | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    significant: bool | None = None
    chance_to_beat_control: float | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Analysis:
    """All arms of one metric."""

    kind: Kind
    test: str
    alpha: float
    correction: Correction
    arms: tuple[ArmResult, ...]
    notes: tuple[str, ...] = field(default=())


def _arm_alone(arm: ArmSummary, kind: Kind, alpha: float) -> tuple[Interval | None, list[str]]:
    notes = []
    if arm.users == 0:
        return None, ["no exposed users yet"]
    if kind == "binary":
        ci = wilson(int(arm.total), arm.users, alpha)
    else:
        ci = t_interval(arm, alpha)
        if ci is None:
            notes.append("one user is not enough for an interval of the mean")
    return ci, notes


@dataclass
class _Comparison:
    """One arm against the control, before the multiple-testing correction."""

    diff: float | None = None
    diff_ci: Interval | None = None
    lift: float | None = None
    lift_ci: Interval | None = None
    p_value: float | None = None
    chance: float | None = None
    notes: list[str] = field(default_factory=list)


def _compare(control: ArmSummary, treat: ArmSummary, kind: Kind, alpha: float) -> _Comparison:
    out = _Comparison()
    if control.mean is None or treat.mean is None:
        out.notes.append("the arm or the control has no exposed users yet, so there is nothing to compare")
        return out
    out.diff = treat.mean - control.mean
    if kind == "binary":
        xc, xt = int(control.total), int(treat.total)
        test = two_proportion_z(xc, control.users, xt, treat.users)
        out.diff_ci = wald_difference(xc, control.users, xt, treat.users, alpha)
        out.chance = beta_chance_to_beat(xc, control.users, xt, treat.users)
        if test is None:
            out.notes.append("no variation: every user in both arms has the same outcome, so the z-test is undefined")
    else:
        test = welch_t(control, treat)
        out.diff_ci = welch_difference(control, treat, alpha)
        out.chance = normal_chance_to_beat(control, treat)
        if test is None:
            out.notes.append("Welch's t-test needs at least 2 users per arm and some variation in the values")
    lift = relative_lift(control, treat, alpha, binary=kind == "binary")
    if lift is None:
        out.notes.append("lift is undefined while the control's mean is 0")
    else:
        out.lift, out.lift_ci = lift
    out.p_value = finite_or_none(test.p_value) if test is not None else None
    return out


def analyse(arms: Sequence[tuple[str, ArmSummary]], kind: Kind, alpha: float = 0.05, correction: Correction = "holm") -> Analysis:
    """Compare every arm after the first (the control) with the first."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if kind not in TESTS:
        raise ValueError(f"kind must be binary or continuous, got {kind!r}")
    control_name, control = arms[0]
    ci, notes = _arm_alone(control, kind, alpha)
    results = [ArmResult(control_name, control.users, control.total, control.mean, ci, notes=tuple(notes))]
    comparisons = []
    for name, arm in arms[1:]:
        ci, notes = _arm_alone(arm, kind, alpha)
        comparisons.append((name, arm, ci, notes, _compare(control, arm, kind, alpha)))
    adjusted = adjust([c.p_value for *_, c in comparisons], correction)
    for (name, arm, ci, notes, c), p_adj in zip(comparisons, adjusted):
        results.append(
            ArmResult(
                arm=name,
                users=arm.users,
                total=arm.total,
                mean=arm.mean,
                ci=ci,
                diff=finite_or_none(c.diff),
                diff_ci=c.diff_ci,
                lift=finite_or_none(c.lift),
                lift_ci=c.lift_ci,
                p_value=c.p_value,
                p_value_adjusted=p_adj,
                significant=None if p_adj is None else p_adj < alpha,
                chance_to_beat_control=finite_or_none(c.chance),
                notes=tuple(notes + c.notes),
            )
        )
    return Analysis(kind, TESTS[kind], alpha, correction, tuple(results))
