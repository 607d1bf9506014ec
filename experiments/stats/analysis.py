"""Every arm against the control: the figures `/results` reports, with reasons where undefined.

Degenerate data never raises and never yields NaN: a figure that cannot be
computed is None and the arm's `notes` say why.

Options stack: with CUPED every figure comes from the adjusted y' with the
continuous (Welch) formulas; with sequential testing the difference's and the
lift's intervals are confidence sequences and the p-value is always valid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from experiments.definitions import MetricKind
from experiments.stats.bayes import beta_chance_to_beat, normal_chance_to_beat
from experiments.stats.corrections import Correction, adjust
from experiments.stats.cuped import CupedResult
from experiments.stats.lift import Lift, lift_estimate, mean_variance
from experiments.stats.means import t_interval, welch_difference, welch_t
from experiments.stats.proportions import two_proportion_z, wald_difference, wilson, z_quantile
from experiments.stats.sequential import always_valid_p_value, confidence_sequence
from experiments.stats.summary import ArmSummary, Interval, finite_or_none

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
    # One of `notes`: why the p-value and intervals are rough (a binary metric with few conversions), if they are.
    rough: str | None = None


@dataclass(frozen=True)
class Analysis:
    """All arms of one metric."""

    kind: MetricKind
    test: str
    alpha: float
    correction: Correction
    arms: tuple[ArmResult, ...]
    notes: tuple[str, ...] = field(default=())


NO_ARM_USERS = "no exposed users yet"


def _arm_alone(arm: ArmSummary, kind: MetricKind, alpha: float) -> tuple[Interval | None, list[str]]:
    notes = []
    if arm.users == 0:
        return None, [NO_ARM_USERS]
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
    rough: str | None = None


@dataclass(frozen=True)
class _Options:
    """How to compare: the formulas' kind, the level, and whether intervals are confidence sequences."""

    kind: MetricKind
    alpha: float
    sequential: bool
    tuning: float


def _finite(interval: Interval | None) -> Interval | None:
    """The interval, or None when it is not finite or is the single point 0.

    The point 0 is what every formula gives when every user in both arms is alike: no variation,
    so no interval is defined, whatever the test. Arms each constant but different (all converted
    against none) keep the formula's zero-width interval at their difference, as the contract defines it.
    """
    if interval is None or not (math.isfinite(interval.low) and math.isfinite(interval.high)) or interval.low == interval.high == 0.0:
        return None
    return interval


def _fixed(control: ArmSummary, treat: ArmSummary, opt: _Options, out: _Comparison) -> None:
    """The fixed-horizon test and interval of the difference."""
    if opt.kind == "binary":
        xc, xt = int(control.total), int(treat.total)
        test = two_proportion_z(xc, control.users, xt, treat.users)
        out.diff_ci = _finite(wald_difference(xc, control.users, xt, treat.users, opt.alpha))
        if test is None:
            out.notes.append("no variation: every user in both arms has the same outcome, so the z-test is undefined")
    else:
        test = welch_t(control, treat)
        out.diff_ci = _finite(welch_difference(control, treat, opt.alpha))
        if test is None:
            out.notes.append("Welch's t-test needs at least 2 users per arm and some variation in the values")
    out.p_value = finite_or_none(test.p_value) if test is not None else None


def _sequence_se(control: ArmSummary, treat: ArmSummary, binary: bool) -> float | None:
    """The unpooled standard error of the difference a confidence sequence is built on; None without variation."""
    # sqrt(v_c/n_c + v_t/n_t) is Wald's for binary metrics (the pooled z-test's holds only under
    # the null, and a sequence must cover every difference) and Welch's for continuous ones.
    vc, vt = mean_variance(control, binary), mean_variance(treat, binary)
    se = math.sqrt(vc + vt) if vc is not None and vt is not None else None
    return se if se is not None and 0 < se < math.inf else None


def difference_sequence(control: ArmSummary, treat: ArmSummary, kind: MetricKind, alpha: float, tuning: float) -> tuple[float | None, Interval | None]:
    """The difference of means and its confidence sequence as `analyse(..., sequential=True)` gives them, without
    the always-valid p-value's search: cheap enough for every day of a series. None where `analyse` has none."""
    diff = treat.mean_difference(control)
    if diff is None or not math.isfinite(diff):
        return None, None
    se = _sequence_se(control, treat, kind == "binary")
    return diff, _finite(confidence_sequence(diff, se, control.users + treat.users, alpha, tuning)) if se is not None else None


def _sequential(control: ArmSummary, treat: ArmSummary, opt: _Options, out: _Comparison) -> None:
    """The confidence sequence of the difference and its always-valid p-value, from the unpooled standard error."""
    se = _sequence_se(control, treat, opt.kind == "binary")
    if out.diff is None or not math.isfinite(out.diff):
        out.notes.append("the difference is not a finite number")
        return
    if se is None:
        out.notes.append("the confidence sequence needs some variation in the values (and 2 users per arm for a continuous metric)")
        return
    n = control.users + treat.users
    out.diff_ci = _finite(confidence_sequence(out.diff, se, n, opt.alpha, opt.tuning))
    out.p_value = finite_or_none(always_valid_p_value(out.diff, se, n, opt.tuning))


def _lift(control: ArmSummary, treat: ArmSummary, opt: _Options, out: _Comparison) -> None:
    lift: Lift = lift_estimate(control, treat, binary=opt.kind == "binary")
    out.lift = lift.value
    if lift.value is None or lift.se is None:
        out.notes.append(lift.note or "lift is undefined")
        return
    constant = opt.kind != "binary" and mean_variance(control, False) == 0 and mean_variance(treat, False) == 0
    if constant:  # as the difference has none: Welch's interval needs variation
        out.notes.append("the lift has no interval: every user within each arm is alike")
        return
    if opt.sequential:
        if not lift.se > 0 and out.diff_ci is None:  # arms each constant but different: as for the difference, no sequence without variation
            out.notes.append("the lift has no confidence sequence: it needs some variation in the values")
            return
        # Otherwise the contract's formula, as the fixed-horizon interval takes it: a delta-method se of 0
        # (no conversions in this arm) gives a sequence of no width, which the arm's notes qualify.
        out.lift_ci = _finite(confidence_sequence(lift.value, lift.se, control.users + treat.users, opt.alpha, opt.tuning))
    else:
        half = z_quantile(opt.alpha) * lift.se
        out.lift_ci = _finite(Interval(lift.value - half, lift.value + half))
    if out.lift_ci is None:
        out.notes.append("the lift has no interval: every user in both arms is alike, or it is not finite")


# The normal approximation behind the z-test and Wald's interval is poor when an arm has fewer
# than this many conversions or non-conversions (the textbook rule of thumb: n p and n (1 - p) >= 5).
FEW_EVENTS = 5


def _few_events(control: ArmSummary, treat: ArmSummary, out: _Comparison) -> None:
    """Say so when a binary metric's arms are too thin for the normal approximation: also under CUPED, whose
    Welch test on 0 conversions of 3 (adjusted values that barely vary) had called a difference significant."""
    thin = [f"{name} has {int(s.total)} conversion{'' if int(s.total) == 1 else 's'} of {s.users}" for name, s in (("the control", control), ("this arm", treat))
            if min(s.total, s.users - s.total) < FEW_EVENTS]
    if thin:
        out.rough = (
            f"{' and '.join(thin)}: with fewer than {FEW_EVENTS} conversions or non-conversions in an arm the normal "
            "approximation behind the p-value and the intervals is rough (an interval can look far narrower than the data allow); read them as indications, not evidence"
        )
        out.notes.append(out.rough)


NO_USERS = "the arm or the control has no exposed users yet, so there is nothing to compare"


def _compare(control: ArmSummary, treat: ArmSummary, opt: _Options, counts: tuple[ArmSummary, ArmSummary] | None) -> _Comparison:
    """`counts`: for a binary metric, the arms' conversions (before CUPED adjusted them)."""
    out = _Comparison()
    if control.mean is None or treat.mean is None:
        out.notes.append(NO_USERS)
        return out
    out.diff = treat.mean_difference(control)
    (_sequential if opt.sequential else _fixed)(control, treat, opt, out)
    if counts is not None:
        _few_events(*counts, out)
    if opt.kind == "binary":
        out.chance = beta_chance_to_beat(int(control.total), control.users, int(treat.total), treat.users)
    else:
        out.chance = normal_chance_to_beat(control, treat)
    _lift(control, treat, opt, out)
    return out


def _summaries(arms: Sequence[tuple[str, ArmSummary]], cuped: CupedResult | None) -> list[ArmSummary]:
    """The summaries every figure comes from: the arms', or CUPED's adjusted ones."""
    if cuped is None or cuped.theta is None:
        return [a for _, a in arms]
    if [a.users for a in cuped.adjusted] != [a.users for _, a in arms]:
        raise ValueError("cuped: the adjusted summaries must be of the same arms, in the same order, with the same users")
    return list(cuped.adjusted)


def analyse(
    arms: Sequence[tuple[str, ArmSummary]],
    kind: MetricKind,
    alpha: float = 0.05,
    correction: Correction = "holm",
    *,
    sequential: bool = False,
    tuning: float = 5000.0,
    cuped: CupedResult | None = None,
) -> Analysis:
    """Compare every arm after the first (the control) with the first, with CUPED and sequential options."""
    # `cuped` with a theta replaces each arm by its adjusted y' and switches to Welch's formulas, even
    # for binary metrics; `sequential` reports confidence sequences and always-valid p-values, both
    # from the unpooled standard error of the difference (see _sequential).
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if kind not in TESTS:
        raise ValueError(f"kind must be binary or continuous, got {kind!r}")
    if sequential and not (math.isfinite(tuning) and tuning > 0):
        raise ValueError(f"tuning must be a finite number above 0, got {tuning}")
    summaries = _summaries(arms, cuped)
    adjusted = cuped is not None and cuped.theta is not None
    opt = _Options("continuous" if adjusted else kind, alpha, sequential, tuning)
    test = TESTS[opt.kind] + ("_cuped" if adjusted else "") + ("_sequential" if sequential else "")
    notes = (f"CUPED not applied: {cuped.note}",) if cuped is not None and not adjusted and cuped.note else ()
    (control_name, raw_control), control = arms[0], summaries[0]
    ci, arm_notes = _arm_alone(control, opt.kind, alpha)
    results = [ArmResult(control_name, raw_control.users, raw_control.total, control.mean, ci, notes=tuple(arm_notes))]
    comparisons = []
    for (name, raw), arm in zip(arms[1:], summaries[1:]):
        ci, arm_notes = _arm_alone(arm, opt.kind, alpha)
        counts = (raw_control, raw) if kind == "binary" else None
        comparisons.append((name, raw, arm, ci, arm_notes, _compare(control, arm, opt, counts)))
    adjusted_p = adjust([c.p_value for *_, c in comparisons], correction)
    for (name, raw, arm, ci, arm_notes, c), p_adj in zip(comparisons, adjusted_p):
        results.append(
            ArmResult(
                arm=name,
                users=raw.users,
                total=raw.total,
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
                notes=tuple(arm_notes + c.notes),
                rough=c.rough,
            )
        )
    return Analysis(kind, test, alpha, correction, tuple(results), notes)
