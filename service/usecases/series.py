"""Results over time: the cumulative daily series and the retention curve of each arm."""
from __future__ import annotations

import time
from typing import Any

from experiments.stats.analysis import difference_sequence
from experiments.stats.proportions import wilson
from experiments.stats.summary import ArmSummary
from service.errors import Invalid
from service.store.database import Database
from service.store.experiments import StoredDefinition
from experiments.definitions import RETENTION_DAYS
from service.store.metrics import DAY, daily_rows, retention_rows
from service.timestamps import iso
from service.usecases.experiment_cache import ExperimentCache
from service.usecases.results import experiment_metric, interval

# The longest series answered: one exposure dated years back (an assignment's `timestamp` may be, to load
# history) would otherwise make every later answer tens of megabytes, 9,800 days for a date in 2000.
MAX_DAYS = 1000


def daily(db: Database, cache: ExperimentCache, key: str, metric_key: str | None, now: float | None = None, alpha: float = 0.05) -> dict[str, Any]:
    """Per UTC day up to today, cumulative exposed users and the metric's cumulative mean per arm, and each
    arm's difference from the control with, for a rate, its confidence sequence: valid at every day at once,
    so a reader may watch it day by day (the same sequence as /results?sequential=true&cuped=false on the
    last day, at the experiment's sequential_tuning). A mean has no interval here: the series keeps no
    spread of the users' values.

    Whatever is dated after today counts on today: one outcome from a client whose clock is a
    century ahead would otherwise add 36,000 empty days to every later answer. An exposure dated
    ahead counts on today too, so that the last day agrees with /results. The series covers at most
    MAX_DAYS days: whatever is dated before its first day counts on that day.
    """
    d, _, metric = experiment_metric(db, cache, key, metric_key)
    exp = d.experiment
    if metric.key in RETENTION_DAYS:
        # Asked of the primary metric by default: the refusal says where the metric came from and what to send.
        which = f"{metric.key!r}" if metric_key else f"the primary metric, {metric.key!r},"
        raise Invalid.field("query.metric", f"{which} has no daily series: daily series are defined for reported metrics, purchase_conversion "
                                            "and revenue (send one as metric=...); retention is a property of exposure cohorts, read at results/retention")
    now = _as_of(d, now)
    exposed, gained = daily_rows(db, exp.key, metric, d.stopped_at)
    if not exposed:
        return {"experiment": exp.key, "metric": metric.key, "metric_kind": metric.kind, "days": []}
    today = int(now // DAY)
    first = min(int(min(r[1] for r in exposed)), today)
    last = min(int(max([r[1] for r in exposed] + [r[1] for r in gained])), today)
    first = max(first, last - MAX_DAYS + 1)
    new_users: dict[tuple[str, int], int] = {}
    for arm, day, count in exposed:
        k = (arm, min(max(int(day), first), today))
        new_users[k] = new_users.get(k, 0) + int(count)
    new_value: dict[tuple[str, int], float] = {}
    for arm, day, value in gained:  # anything dated before the first exposure day counts on that day
        k = (arm, min(max(int(day), first), today))
        new_value[k] = new_value.get(k, 0.0) + float(value or 0)
    days = []
    users = {a.key: 0 for a in exp.arms}
    totals = {a.key: 0.0 for a in exp.arms}
    tuning = exp.analysis.sequential_tuning
    for day in range(first, last + 1):
        arms = []
        for a in exp.arms:
            users[a.key] += new_users.get((a.key, day), 0)
            totals[a.key] += new_value.get((a.key, day), 0.0)
            mean = totals[a.key] / users[a.key] if users[a.key] else None
            arms.append({"arm": a.key, "users": users[a.key], "total": totals[a.key], "mean": mean, "diff": None, "diff_ci": None})
        control = arms[0]
        for arm in arms[1:]:
            arm["diff"], arm["diff_ci"] = _difference(control, arm, metric.kind, alpha, tuning)
        days.append({"date": iso(day * DAY)[:10], "arms": arms})  # type: ignore[index]
    return {"experiment": exp.key, "metric": metric.key, "metric_kind": metric.kind, "days": days}


def _difference(control: dict[str, Any], arm: dict[str, Any], kind: str, alpha: float, tuning: float) -> tuple[float | None, list[float] | None]:
    """An arm's difference from the control on a day, with a rate's confidence sequence."""
    if not (control["users"] and arm["users"]):
        return None, None
    conversions = [round(side["total"]) for side in (control, arm)]
    # A conversion dated before its user's exposure counts from the exposure's day (store.metrics), so a day's
    # conversions never outnumber its users; should a total ever not be such a count, there is no rate to compare.
    if kind != "binary" or not all(0 <= x <= side["users"] for x, side in zip(conversions, (control, arm))):
        return arm["mean"] - control["mean"], None
    diff, sequence = difference_sequence(ArmSummary.binary(control["users"], conversions[0]), ArmSummary.binary(arm["users"], conversions[1]),
                                         "binary", alpha, tuning)
    return diff, interval(sequence)


def retention(db: Database, cache: ExperimentCache, key: str, days: int, alpha: float, now: float | None = None) -> dict[str, Any]:
    """Per arm and day k = 1..days after exposure, the share of users active that day among those whose day k has ended."""
    d, _ = cache.current(db, key)
    now = time.time() if now is None else now
    exposed, active = retention_rows(db, key, days, _as_of(d, now))
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
            ci = wilson(hits, eligible, alpha)
            series.append({"day": k, "eligible": eligible, "active": hits, "rate": hits / eligible if eligible else None, "ci": interval(ci)})
        arms.append({"arm": a.key, "days": series})
    return {"experiment": key, "alpha": alpha, "computed_at": iso(now), "arms": arms}


def _as_of(d: StoredDefinition, now: float | None) -> float:
    """The moment a series reads up to: now, or a stopped experiment's stop, after which nothing counts."""
    now = time.time() if now is None else now
    return now if d.stopped_at is None else min(now, d.stopped_at)
