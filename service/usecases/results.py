"""Results: per-arm moments from the store, statistics from `experiments.stats`, assembled into the `/results` answer."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, Sequence

from experiments.definitions import RETENTION_DAYS, AnalysisSettings, Experiment, Metric
from experiments.stats import ArmSummary, analyse, sample_ratio_mismatch
from experiments.stats.analysis import NO_ARM_USERS, NO_USERS, Analysis, ArmResult
from experiments.stats.corrections import Correction
from experiments.stats.cuped import CupedArm, CupedResult, cuped
from experiments.stats.ipw import ipw_arm
from experiments.stats.power import PLAN_DEFAULTS, MdeType, plan_sample_size
from experiments.stats.summary import Interval, finite_or_none
from service.errors import Invalid
from service.store.arm_moments import ArmMoments, adjusted_spread, arm_moments, exposures_per_arm, points_per_arm
from service.store.database import Database
from service.store.experiments import StoredDefinition
from service.timestamps import iso
from service.usecases.bandit_allocation import bandit_allocation, every_arm_possible, no_positivity_note
from service.usecases.experiment_cache import ExperimentCache

BANDIT_NOTE = (
    "Bandit allocation adapts to the data, so naive per-arm means, intervals and p-values are biased "
    "(arms that looked good early got more users). Compare arms by ipw_mean or snipw_mean, estimated from the "
    "logged assignment probabilities; treat the naive figures as descriptive."
)
EMPTY = ArmMoments(0, 0.0, 0.0, 0)
GuardrailStatus = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class ResultsRequest:
    """What an analyst asked for; None means the experiment's own analysis settings."""

    metric: str | None = None
    alpha: float = 0.05
    correction: Correction = "holm"
    mde: float | None = None
    mde_type: MdeType = PLAN_DEFAULTS["mde_type"]
    power: float = PLAN_DEFAULTS["power"]
    sequential: bool | None = None
    sequential_tuning: float | None = None
    cuped: bool | None = None


def interval(i: Any) -> list[float] | None:
    """An interval as [low, high], or None."""
    return None if i is None else [i.low, i.high]


def experiment_metric(db: Database, cache: ExperimentCache, key: str, metric: str | None, field: str = "query.metric") -> tuple[StoredDefinition, str, Metric]:
    """The experiment at its current revision, its status, and the metric asked for (Invalid naming `field` if unknown)."""
    d, status = cache.current(db, key)
    name = metric or d.experiment.primary_metric
    try:
        return d, status, d.experiment.metric(name)
    except KeyError:
        known = [m.key for m in d.experiment.metrics]
        raise Invalid.field(field, f"{name!r} is neither a metric of this experiment ({', '.join(known) or 'none declared'}) nor a built-in one") from None


def _settings(exp: Experiment, req: ResultsRequest) -> AnalysisSettings:
    s = exp.analysis
    return replace(
        s,
        sequential=s.sequential if req.sequential is None else req.sequential,
        sequential_tuning=s.sequential_tuning if req.sequential_tuning is None else req.sequential_tuning,
        cuped=s.cuped if req.cuped is None else req.cuped,
    )


def _summary(m: ArmMoments, kind: str) -> ArmSummary:
    return ArmSummary.binary(m.users, m.positives) if kind == "binary" else ArmSummary.of_moments(m.users, m.mean, m.m2, m.residual)


@dataclass(frozen=True)
class _Computed:
    analysis: Analysis
    per_arm: list[tuple[str, ArmMoments]]
    cuped: CupedResult | None
    notes: list[str]


def _compute(
    db: Database, exp: Experiment, metric: Metric, settings: AnalysisSettings, alpha: float, correction: Correction, now: float, until: float | None
) -> _Computed:
    """Moments, CUPED when it applies, and the analysis of one metric."""
    notes: list[str] = []
    use_cuped = settings.cuped and metric.builtin
    if settings.cuped and not metric.builtin:
        notes.append(f"CUPED not applied: {metric.key} is reported through outcomes, which have no pre-exposure period")
    moments = arm_moments(
        db, exp.key, metric.key, metric.builtin, exp.type == "bandit", now, settings.cuped_days if use_cuped else None, binary=metric.kind == "binary", until=until
    )
    per_arm = [(a.key, moments.get(a.key, EMPTY)) for a in exp.arms]
    adjusted = None
    if use_cuped:
        def exact_spread(theta: float) -> list[float]:
            centres = {name: m.mean - theta * m.mean_x for name, m in per_arm if m.users}
            spread = adjusted_spread(db, exp.key, metric.key, now, settings.cuped_days, theta, centres, until)
            return [spread.get(name, 0.0) for name, _ in per_arm]

        result = cuped([CupedArm(m.users, m.mean_x, m.mean, m.m2_x, m.m2, m.c_xy, m.residual_x, m.residual) for _, m in per_arm], exact_spread)
        if result.theta is None and metric.key in RETENTION_DAYS and not any(m.users for _, m in per_arm):
            notes.append(f"CUPED skipped: no user was exposed {RETENTION_DAYS[metric.key] + 1} or more days ago yet")
        elif result.theta is None:
            notes.append(f"CUPED skipped: {result.note or 'no usable pre-exposure data'}")
        else:
            adjusted = result
            if result.note:
                notes.append(f"CUPED's variance_reduction is null: {result.note}")
    summaries = [(name, _summary(m, metric.kind)) for name, m in per_arm]
    analysis = analyse(summaries, metric.kind, alpha, correction, sequential=settings.sequential, tuning=settings.sequential_tuning, cuped=adjusted)
    return _Computed(analysis, per_arm, adjusted, notes)


def _arm_notes(notes: Sequence[str], metric: str) -> list[str]:
    """An arm's notes; for a retention metric, "no exposed users" says that nobody exposed is old enough yet."""
    if metric not in RETENTION_DAYS:
        return list(notes)
    days = RETENTION_DAYS[metric]
    why = f"{metric} counts a user once their day-{days} window has closed"
    instead = {
        NO_ARM_USERS: f"no user of this arm was exposed {days + 1} or more days ago yet: {why}",
        NO_USERS: f"no user of this arm or of the control was exposed {days + 1} or more days ago: {why}, so there is nothing to compare yet",
    }
    if NO_USERS in notes:  # the comparison's note says it all; the arm's own would repeat it
        notes = [note for note in notes if note != NO_ARM_USERS]
    return [instead.get(note, note) for note in notes]


def guardrail_status(diff: float | None, diff_ci: Interval | None, higher_is_better: bool) -> GuardrailStatus:
    """fail when the interval lies wholly on the worse side of 0, warn when the difference does; for most
    metrics the worse side is below 0, for one declared with higher_is_better false above it."""
    sign = 1.0 if higher_is_better else -1.0
    if diff_ci is not None and max(sign * diff_ci.low, sign * diff_ci.high) < 0:
        return "fail"
    if diff is not None and sign * diff < 0:
        return "warn"
    return "ok"


def _guardrails(
    db: Database, exp: Experiment, settings: AnalysisSettings, alpha: float, correction: Correction, now: float, until: float | None
) -> list[dict[str, Any]]:
    """Each treatment arm on each guardrail metric, with why an `ok` may rest on no evidence yet."""
    out = []
    for name in exp.guardrails:
        metric = exp.metric(name)
        computed = _compute(db, exp, metric, settings, alpha, correction, now, until)
        for arm in computed.analysis.arms[1:]:
            note = arm.rough  # a status on a handful of conversions says so
            if arm.diff is None or arm.diff_ci is None:
                note = "; ".join(_arm_notes(arm.notes, name)) or ("no difference yet" if arm.diff is None else "no interval yet")
            out.append({
                "arm": arm.arm, "metric": name, "diff": arm.diff, "diff_ci": interval(arm.diff_ci),
                "status": guardrail_status(arm.diff, arm.diff_ci, metric.higher_is_better), "higher_is_better": metric.higher_is_better, "note": note,
            })
    return out


NO_REWARD_ACTIONS = "no reward action has been recorded for this arm's users while the experiment ran, so its points figures count none"
UNPAID = ("this arm's users have reward actions but its schedule has granted no points yet, as one that pays on every Nth action or after "
          "an interval does at first: its points figures, and any cost compared with it, leave out what it will pay")


def _costs(
    rows: list[dict[str, Any]], per_arm: list[tuple[str, ArmMoments]], ledger: dict[str, tuple[float, int]], exposed: dict[str, int], scheduled: set[str],
) -> None:
    """Points per exposed user and points per incremental conversion (or unit of the metric) against the control.

    Points are over every user the arm was given, whatever the metric counts of them: a retention
    metric counts only users exposed long enough, and dividing all their points by those alone had
    made the same arm's points per user triple between one metric and the next. The cost is the
    API's formula wherever the difference is positive; an arm with a schedule whose users have no
    reward action recorded (a storefront that does not report them) says so in its notes, since its
    0 points per user, and so the cost, are then no finding. An arm without a schedule costs 0 by design.
    """
    for row, (name, _) in zip(rows, per_arm):
        users = exposed.get(name, 0)
        points, actions = ledger.get(name, (0.0, 0))
        row["points_per_user"] = points / users if users else None
        row["reward_actions"] = actions
        if name in scheduled and not actions:
            row["notes"] = [*row["notes"], NO_REWARD_ACTIONS]
        elif name in scheduled and actions and not points:
            row["notes"] = [*row["notes"], UNPAID]
    control = rows[0]["points_per_user"]
    for i, row in enumerate(rows):
        diff = row["diff"]
        usable = i > 0 and control is not None and row["points_per_user"] is not None and diff is not None and diff > 0
        if not usable:
            row["cost_per_incremental"] = None
            continue
        spent = row["points_per_user"] - control
        # Equal schedules give equal points per user up to the last digits of their sums: that is 0, not a saving.
        if abs(spent) <= 1e-12 * max(abs(row["points_per_user"]), abs(control)):
            spent = 0.0
        row["cost_per_incremental"] = finite_or_none(spent / diff)


def _sample_size(kind: str, control: ArmSummary, req: ResultsRequest, arms: int) -> dict[str, Any]:
    """Users per arm to detect `mde` from the control's observed rate (or mean and spread)."""
    assert req.mde is not None
    out: dict[str, Any] = {"mde": req.mde, "mde_type": req.mde_type, "power": req.power, "alpha": req.alpha, "alpha_per_test": None, "users_per_arm": None, "note": None}
    if control.mean is None:
        out["note"] = "cannot size yet: the control has no exposed users"
        return out
    sd = math.sqrt(control.variance) if control.variance is not None else None
    try:
        plan = plan_sample_size(kind, control.mean, sd, req.mde, req.mde_type, req.alpha, req.power, arms, req.correction if req.correction != "bh" else "holm", None)
    except ValueError as exc:
        out["note"] = f"cannot size yet: {exc}"
        return out
    out["users_per_arm"] = plan.users_per_arm
    out["alpha_per_test"] = plan.alpha_per_test
    source = "from the control's observed rate" if kind == "binary" else "from the control's observed standard deviation"
    split = f"; each of the {arms - 1} comparisons with the control is sized at alpha / {arms - 1} = {plan.alpha_per_test:g}" if plan.alpha_per_test != req.alpha else ""
    out["note"] = source + split
    return out


def _arm_row(result: ArmResult, m: ArmMoments, kind: str) -> dict[str, Any]:
    """One arm's figures against the control, as the answer gives them."""
    return {
        "arm": result.arm,
        "users": result.users,
        "total": m.total if kind == "continuous" else float(m.positives),
        "mean": finite_or_none(result.mean),
        "ci": interval(result.ci),
        "diff": result.diff,
        "diff_ci": interval(result.diff_ci),
        "lift": result.lift,
        "lift_ci": interval(result.lift_ci),
        "p_value": result.p_value,
        "p_value_adjusted": result.p_value_adjusted,
        "significant": result.significant,
        "chance_to_beat_control": result.chance_to_beat_control,
        "notes": list(result.notes),
    }


def _arm_rows(db: Database, exp: Experiment, metric: Metric, computed: _Computed, alpha: float, positivity: bool) -> list[dict[str, Any]]:
    """Every arm's row: its figures, a bandit's weighted estimates, and where arms have reward schedules what their points cost."""
    total_users = sum(m.users for _, m in computed.per_arm)
    rows = []
    for result, (_, m) in zip(computed.analysis.arms, computed.per_arm):
        row = _arm_row(result, m, metric.kind)
        if exp.type == "bandit":
            est = ipw_arm(m.propensity_sums(), total_users, alpha, intervals=positivity)
            row.update({"ipw_mean": est.ipw_mean, "ipw_ci": interval(est.ipw_ci), "snipw_mean": est.snipw_mean, "snipw_ci": interval(est.snipw_ci),
                        "ipw_effective_users": est.effective_users})
            row["notes"] += [n for n in est.notes if n not in row["notes"]]
        row["notes"] = _arm_notes(row["notes"], metric.key)
        rows.append(row)
    if any(a.schedule is not None for a in exp.arms):
        scheduled = {a.key for a in exp.arms if a.schedule is not None}
        _costs(rows, computed.per_arm, points_per_arm(db, exp.key), exposures_per_arm(db, exp.key), scheduled)
    return rows


def _window_notes(metric: str, stopped_at: float | None) -> list[str]:
    """Which users and days the figures leave out: those too recent for a retention metric, and all after a stop."""
    notes = []
    if metric in RETENTION_DAYS:
        days = RETENTION_DAYS[metric]
        ago = "days ago" if stopped_at is None else "days before the stop"
        notes.append(f"{metric} counts only users exposed at least {days + 1} {ago}, whose day-{days} window has closed")
    if stopped_at is not None:
        notes.append(f"stopped at {iso(stopped_at)}: what users did from then on counts for no arm")
    return notes


def _srm(db: Database, exp: Experiment, metric: str, per_arm: list[tuple[str, ArmMoments]]) -> dict[str, Any] | None:
    """An A/B test's sample-ratio check of its assignments against the arms' weights; None until it can be made."""
    # The split is of assignments: a retention metric's users are only those old enough for it.
    exposed = exposures_per_arm(db, exp.key) if metric in RETENTION_DAYS else {name: m.users for name, m in per_arm}
    srm = sample_ratio_mismatch([exposed.get(arm.key, 0) for arm in exp.arms], [arm.weight for arm in exp.arms])
    if srm is None:
        return None
    return {"p_value": srm.p_value, "observed": srm.observed, "expected": srm.expected, "mismatch": srm.mismatch, "statistic": srm.statistic}


def results(db: Database, cache: ExperimentCache, key: str, req: ResultsRequest) -> dict[str, Any]:
    """The whole `/results` answer for one metric (the primary one by default)."""
    d, status, metric = experiment_metric(db, cache, key, req.metric)
    exp = d.experiment
    settings = _settings(exp, req)
    now = time.time()
    computed = _compute(db, exp, metric, settings, req.alpha, req.correction, now, d.stopped_at)
    positivity = exp.type != "bandit" or every_arm_possible(exp)
    out: dict[str, Any] = {
        "experiment": exp.key,
        "status": status,
        "type": exp.type,
        "metric": metric.key,
        "metric_kind": metric.kind,
        "metric_source": "events" if metric.builtin else "outcomes",
        "higher_is_better": metric.higher_is_better,
        "alpha": req.alpha,
        "test": computed.analysis.test,
        "correction": req.correction,
        "control": exp.control.key,
        "arms": _arm_rows(db, exp, metric, computed, req.alpha, positivity),
        "srm": None,
        "sequential": {"tuning": settings.sequential_tuning} if settings.sequential else None,
        "cuped": {"theta": computed.cuped.theta, "days": settings.cuped_days, "variance_reduction": computed.cuped.variance_reduction} if computed.cuped else None,
        "guardrails": _guardrails(db, exp, settings, req.alpha, req.correction, now, d.stopped_at),
        "computed_at": iso(now),
        "notes": computed.notes + _window_notes(metric.key, d.stopped_at),
    }
    if exp.type == "ab":
        out["srm"] = _srm(db, exp, metric.key, computed.per_arm)
    else:
        out["allocation"] = {arm.key: float(p) for arm, p in zip(exp.arms, bandit_allocation(db, d))}
        out["safe_to_compare"] = ["ipw_mean", "snipw_mean"] if positivity else []
        out["notes"].append(BANDIT_NOTE if positivity else no_positivity_note(exp))
    if req.mde is not None:
        out["sample_size"] = _sample_size(metric.kind, _summary(computed.per_arm[0][1], metric.kind), req, len(exp.arms))
    return out
