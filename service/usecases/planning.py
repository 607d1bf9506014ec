"""Before and beside an experiment: how many users a test needs, and what another allocation would have been worth."""
from __future__ import annotations

import time
from typing import Any, Mapping

from experiments.stats.ipw import best_arm_target, evaluate_allocation, ipw_arm
from experiments.stats.power import PLAN_DEFAULTS, SEQUENTIAL_TUNING, plan_sample_size
from service.errors import Invalid
from service.store.arm_moments import arm_moments
from service.store.database import Database
from service.usecases.bandit_allocation import every_arm_possible, no_positivity_note
from service.usecases.experiment_cache import ExperimentCache
from service.usecases.results import EMPTY, experiment_metric, interval

PLAN_FIELDS = ("metric_kind", "baseline", "sd", "mde", "mde_type", "alpha", "power", "arms", "correction", "daily_users")


def plan(question: Mapping[str, Any]) -> dict[str, Any]:
    """Users per arm, total users and days for a test; Invalid names the input that makes it impossible."""
    try:
        q = {**PLAN_DEFAULTS, **question}
        p = plan_sample_size(
            q["metric_kind"], q["baseline"], q.get("sd"), q["mde"], q["mde_type"], q["alpha"], q["power"], q["arms"], q["correction"], q.get("daily_users"),
        )
    except ValueError as exc:
        message = str(exc)
        field = message.split(":", 1)[0] if message.split(":", 1)[0] in PLAN_FIELDS else "body"
        raise Invalid.field(field, message.split(": ", 1)[-1] if field != "body" else message) from None
    sequential = None
    if p.sequential_users_per_arm is not None:
        sequential = {"users_per_arm": p.sequential_users_per_arm, "total_users": p.sequential_total_users, "days": p.sequential_days, "tuning": SEQUENTIAL_TUNING}
    return {"users_per_arm": p.users_per_arm, "total_users": p.total_users, "days": p.days, "alpha_per_test": p.alpha_per_test, "note": p.note,
            "sequential": sequential}


NO_BEST_ARM = "no arm has an estimate yet (nobody exposed, or no propensities logged), so best_arm names none and every share is 0"


def evaluate(
    db: Database, cache: ExperimentCache, key: str, allocation: Mapping[str, float] | str, metric_key: str | None, alpha: float, lowest_is_best: bool = False,
) -> dict[str, Any]:
    """IPW and self-normalised IPW estimates of the metric under `allocation`, from the logged assignments and their propensities.

    "best_arm" is the arm with the highest SNIPW mean, as the API defines it; `lowest_is_best` makes it the
    lowest, for a reader of a metric where lower is better (complaints, refunds).
    """
    d, _, metric = experiment_metric(db, cache, key, metric_key, field="metric")  # a field of the body here
    exp = d.experiment
    moments = arm_moments(db, exp.key, metric.key, metric.builtin, True, time.time(), binary=metric.kind == "binary", until=d.stopped_at)
    by_arm = [moments.get(a.key, EMPTY) for a in exp.arms]
    sums = [m.propensity_sums() for m in by_arm]
    users = sum(s.users for s in sums)
    if allocation == "best_arm":
        means = [ipw_arm(s, users, alpha).snipw_mean for s in sums]
        target = best_arm_target([None if m is None else -m for m in means] if lowest_is_best else means)
    else:
        assert isinstance(allocation, Mapping)
        arms = {a.key for a in exp.arms}
        unknown = sorted(set(allocation) - arms)
        if unknown:
            raise Invalid.field(f"allocation.{unknown[0]}", f"is not an arm of {exp.key} ({', '.join(a.key for a in exp.arms)})")
        if abs(sum(allocation.values()) - 1.0) > 1e-9:
            raise Invalid.field("allocation", f"shares must add up to 1, they add up to {sum(allocation.values()):g}")
        target = [float(allocation.get(a.key, 0.0)) for a in exp.arms]
    positivity = every_arm_possible(exp)
    value = evaluate_allocation(sums, target, users, alpha, intervals=positivity)
    return {
        "experiment": exp.key,
        "metric": metric.key,
        "allocation": {a.key: share for a, share in zip(exp.arms, target)},
        "ipw": {"value": value.ipw, "ci": interval(value.ipw_ci)},
        "snipw": {"value": value.snipw, "ci": interval(value.snipw_ci)},
        "effective_sample_size": value.effective_sample_size,
        "users": users,
        # What the allocation actually used gave, for the estimates to be read against.
        "as_run": sum(m.mean * m.users for m in by_arm) / users if users else None,
        "notes": ([NO_BEST_ARM] if allocation == "best_arm" and not any(target) else []) + list(value.notes)
        + ([] if positivity else [no_positivity_note(exp)]),
    }
