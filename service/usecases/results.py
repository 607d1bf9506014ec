"""Results: per-arm aggregates from the database, statistics from `experiments.stats`."""
from __future__ import annotations

import math
import time
from typing import Any

from experiments.definitions import Metric
from experiments.stats import ArmSummary, analyse, sample_ratio_mismatch
from experiments.stats.summary import finite_or_none
from experiments.stats.corrections import Correction
from experiments.stats.proportions import wilson
from experiments.stats.power import users_per_arm_mean, users_per_arm_proportion
from service.store.database import Database
from service.store.experiments import StoredDefinition
from service.store.metrics import DAY, RETENTION_DAYS, ArmAggregate, arm_aggregates, daily_rows, retention_rows
from service.errors import Invalid
from service.usecases.assignment import DefinitionCache, bandit_allocation
from service.timestamps import iso

BANDIT_NOTE = (
    "Bandit allocation adapts to the data, so naive per-arm means, intervals and p-values are biased "
    "(arms that looked good early got more users). Compare arms by ipw_mean, the inverse-propensity-weighted "
    "mean from the logged assignment probabilities; treat the naive figures as descriptive."
)


def _interval(i: Any) -> list[float] | None:
    return None if i is None else [i.low, i.high]


def _sample_size(exp_kind: str, control: ArmSummary, mde: float, alpha: float, power: float) -> dict[str, Any]:
    out: dict[str, Any] = {"mde": mde, "power": power, "alpha": alpha, "users_per_arm": None, "note": None}
    try:
        if exp_kind == "binary":
            out["users_per_arm"] = users_per_arm_proportion(control.mean or 0.0, mde, alpha, power)
            out["note"] = "two-proportion z-test from the control's observed rate to that rate + mde"
        else:
            out["users_per_arm"] = users_per_arm_mean(math.sqrt(control.variance or 0.0), mde, alpha, power)
            out["note"] = "two-sample test with the control's observed standard deviation"
    except ValueError as exc:
        out["note"] = f"cannot size yet: {exc}"
    return out


def _definition(db: Database, cache: DefinitionCache, key: str, metric: str | None) -> tuple[StoredDefinition, str, Metric]:
    """The experiment at its current revision, its status, and the metric asked for (Invalid if unknown)."""
    d, status = cache.current(db, key)
    name = metric or d.experiment.primary_metric
    try:
        return d, status, d.experiment.metric(name)
    except KeyError:
        known = [m.key for m in d.experiment.metrics]
        raise Invalid.field("query.metric", f"{name!r} is neither a metric of this experiment ({', '.join(known) or 'none declared'}) nor a built-in one") from None


def results(db: Database, cache: DefinitionCache, key: str, metric_key: str | None, alpha: float, correction: Correction, mde: float | None = None, power: float = 0.8) -> dict[str, Any]:
    """The whole `/results` answer for one metric (the primary one by default)."""
    d, status, metric = _definition(db, cache, key, metric_key)
    exp = d.experiment
    now = time.time()
    agg = arm_aggregates(db, exp, metric, now)
    empty = ArmAggregate(0, 0.0, 0.0, 0)
    per_arm = [(a.key, agg.get(a.key, empty)) for a in exp.arms]
    summaries = [
        (name, ArmSummary.binary(a.users, a.positives) if metric.kind == "binary" else ArmSummary(a.users, a.total, a.sumsq))
        for name, a in per_arm
    ]
    analysis = analyse(summaries, metric.kind, alpha, correction)
    arms = []
    for result, (name, a) in zip(analysis.arms, per_arm):
        row: dict[str, Any] = {
            "arm": result.arm,
            "users": result.users,
            "total": result.total,
            "mean": finite_or_none(result.mean),
            "ci": _interval(result.ci),
            "diff": result.diff,
            "diff_ci": _interval(result.diff_ci),
            "lift": result.lift,
            "lift_ci": _interval(result.lift_ci),
            "p_value": result.p_value,
            "p_value_adjusted": result.p_value_adjusted,
            "significant": result.significant,
            "chance_to_beat_control": result.chance_to_beat_control,
            "notes": list(result.notes),
        }
        if exp.type == "bandit":
            weighted = a.weighted_positives if metric.kind == "binary" else a.weighted_total
            row["ipw_mean"] = finite_or_none(weighted / a.inverse_p) if a.inverse_p else None
        arms.append(row)
    out: dict[str, Any] = {
        "experiment": exp.key,
        "status": status,
        "type": exp.type,
        "metric": metric.key,
        "metric_kind": metric.kind,
        "metric_source": "events" if metric.builtin else "outcomes",
        "alpha": alpha,
        "test": analysis.test,
        "correction": correction,
        "control": exp.control.key,
        "arms": arms,
        "srm": None,
        "computed_at": iso(now),
        "notes": [],
    }
    if metric.key in RETENTION_DAYS:
        out["notes"].append(
            f"{metric.key} counts only users exposed at least {RETENTION_DAYS[metric.key] + 1} days ago, whose day-{RETENTION_DAYS[metric.key]} window has closed"
        )
    if exp.type == "ab":
        srm = sample_ratio_mismatch([a.users for _, a in per_arm], [arm.weight for arm in exp.arms])
        if srm is not None:
            out["srm"] = {"p_value": srm.p_value, "observed": srm.observed, "expected": srm.expected, "mismatch": srm.mismatch, "statistic": srm.statistic}
    else:
        allocation = bandit_allocation(db, d)
        out["allocation"] = {arm.key: float(p) for arm, p in zip(exp.arms, allocation)}
        out["safe_to_compare"] = ["ipw_mean"]
        out["notes"].append(BANDIT_NOTE)
    if mde is not None:
        out["sample_size"] = _sample_size(metric.kind, summaries[0][1], mde, alpha, power)
    return out


def daily(db: Database, cache: DefinitionCache, key: str, metric_key: str | None) -> dict[str, Any]:
    """Per UTC day, cumulative exposed users and the metric's cumulative mean per arm."""
    d, _, metric = _definition(db, cache, key, metric_key)
    exp = d.experiment
    if metric.key in RETENTION_DAYS:
        raise Invalid.field("query.metric", "daily series are defined for reported metrics, purchase_conversion and revenue; retention is a property of exposure cohorts")
    exposed, gained = daily_rows(db, exp.key, metric)
    if not exposed:
        return {"experiment": exp.key, "metric": metric.key, "metric_kind": metric.kind, "days": []}
    first, last = int(min(r[1] for r in exposed)), int(max([r[1] for r in exposed] + [r[1] for r in gained]))
    new_users = {(r[0], int(r[1])): int(r[2]) for r in exposed}
    new_value: dict[tuple[str, int], float] = {}
    for arm, day, value in gained:  # anything dated before the first exposure day counts on that day
        k = (arm, max(int(day), first))
        new_value[k] = new_value.get(k, 0.0) + float(value or 0)
    days = []
    users = {a.key: 0 for a in exp.arms}
    totals = {a.key: 0.0 for a in exp.arms}
    for day in range(first, last + 1):
        arms = []
        for a in exp.arms:
            users[a.key] += new_users.get((a.key, day), 0)
            totals[a.key] += new_value.get((a.key, day), 0.0)
            mean = totals[a.key] / users[a.key] if users[a.key] else None
            arms.append({"arm": a.key, "users": users[a.key], "total": totals[a.key], "mean": mean})
        days.append({"date": iso(day * DAY)[:10], "arms": arms})  # type: ignore[index]
    return {"experiment": exp.key, "metric": metric.key, "metric_kind": metric.kind, "days": days}


def retention(db: Database, cache: DefinitionCache, key: str, days: int, alpha: float, now: float | None = None) -> dict[str, Any]:
    """Per arm and day k = 1..days after exposure, the share of users active that day among those whose day k has ended."""
    d, _ = cache.current(db, key)
    now = time.time() if now is None else now
    exposed, active = retention_rows(db, key, days, now)
    by_age: dict[tuple[str, int], int] = {}
    for arm, age, users in exposed:
        by_age[(arm, int(age))] = by_age.get((arm, int(age)), 0) + int(users)
    active_on = {(arm, int(k)): int(users) for arm, k, users in active}
    arms = []
    for a in d.experiment.arms:
        series = []
        for k in range(1, days + 1):
            # Day k of a user exposed at t is [t + k days, t + (k + 1) days): it has ended once they are k + 1 whole days old.
            eligible = sum(n for (arm, age), n in by_age.items() if arm == a.key and age >= k + 1)
            hits = active_on.get((a.key, k), 0)
            interval = wilson(hits, eligible, alpha)
            series.append({"day": k, "eligible": eligible, "active": hits, "rate": hits / eligible if eligible else None, "ci": _interval(interval)})
        arms.append({"arm": a.key, "days": series})
    return {"experiment": key, "alpha": alpha, "computed_at": iso(now), "arms": arms}
