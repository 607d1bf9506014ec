"""Aggregate SQL for experiment metrics: per arm, computed in the database.

Reported metrics read the per-user running totals that outcomes maintain;
built-in metrics are derived from events after each user's exposure. Either
way the database returns one row per arm (or per arm and day), never per user.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from experiments.definitions import Experiment, Metric
from service.store.database import Database

DAY = 86_400.0

# Per-user value of each built-in metric over the user's events after exposure.
# retention_dN: any event in the N-th 24-hour window after exposure, [N, N+1) days.
_BUILTIN_VALUE = {
    "purchase_conversion": "MAX(CASE WHEN e.type = 'purchase' THEN 1 ELSE 0 END)",
    "revenue": "SUM(CASE WHEN e.type = 'purchase' THEN COALESCE(e.value, 0) ELSE 0 END)",
    **{
        f"retention_d{n}": f"MAX(CASE WHEN e.ts >= x.exposed_at + {n * DAY} AND e.ts < x.exposed_at + {(n + 1) * DAY} THEN 1 ELSE 0 END)"
        for n in (1, 7, 30)
    },
}
RETENTION_DAYS = {"retention_d1": 1, "retention_d7": 7, "retention_d30": 30}


@dataclass(frozen=True)
class ArmAggregate:
    """One arm's sums over its exposed users; the IPW sums are filled for bandits only."""

    users: int
    total: float
    sumsq: float
    positives: int
    inverse_p: float = 0.0
    weighted_total: float = 0.0
    weighted_positives: float = 0.0


def day_of(column: str, dialect: str) -> str:
    """The UTC day number of an epoch column (CAST truncates on SQLite, rounds on PostgreSQL)."""
    return f"CAST({column} / {DAY} AS INTEGER)" if dialect == "sqlite" else f"FLOOR({column} / {DAY})"


def _per_user(metric: str, builtin: bool) -> str:
    """A subquery of (arm, p, v): every exposed user with their value (0 without data)."""
    if builtin:
        return (
            f"SELECT x.arm AS arm, x.probability AS p, COALESCE({_BUILTIN_VALUE[metric]}, 0) AS v "
            "FROM exposures x LEFT JOIN events e ON e.user_id = x.user_id AND e.ts >= x.exposed_at "
            "WHERE x.experiment_key = :key AND x.exposed_at <= :mature_before "
            "GROUP BY x.arm, x.user_id, x.probability"
        )
    return (
        "SELECT x.arm AS arm, x.probability AS p, COALESCE(t.total, 0) AS v FROM exposures x "
        "LEFT JOIN user_metric_totals t ON t.experiment_key = x.experiment_key AND t.metric = :metric "
        "AND t.user_id = x.user_id WHERE x.experiment_key = :key"
    )


def per_arm_joined(metric: str, builtin: bool) -> str:
    """Sums per arm over the per-user subquery, with inverse-propensity sums."""
    return (
        "SELECT arm, COUNT(*), SUM(v), SUM(v * v), SUM(CASE WHEN v > 0 THEN 1 ELSE 0 END), "
        "SUM(1.0 / p), SUM(v / p), SUM(CASE WHEN v > 0 THEN 1.0 ELSE 0.0 END / p) "
        f"FROM ({_per_user(metric, builtin)}) per_user GROUP BY arm"
    )


# Reported metrics of A/B experiments need no join: totals carry their arm.
EXPOSED_PER_ARM = "SELECT arm, COUNT(*) FROM exposures WHERE experiment_key = :key GROUP BY arm"
TOTALS_PER_ARM = (
    "SELECT arm, SUM(total), SUM(total * total), SUM(CASE WHEN total > 0 THEN 1 ELSE 0 END) "
    "FROM user_metric_totals WHERE experiment_key = :key AND metric = :metric GROUP BY arm"
)


def daily_exposures(dialect: str) -> str:
    """New exposures per arm and day."""
    return f"SELECT arm, {day_of('exposed_at', dialect)} AS day, COUNT(*) FROM exposures WHERE experiment_key = :key GROUP BY arm, day"


def daily_values(metric: str, kind: str, builtin: bool, dialect: str) -> str:
    """Per arm and day, what the metric gained: value summed (continuous) or users converted (binary)."""
    if builtin:
        first = "MIN(e.ts)"
        value = "SUM(COALESCE(e.value, 0))"
        per_user = (
            f"SELECT x.arm AS arm, {first} AS first_ts, {value} AS v FROM exposures x JOIN events e ON e.user_id = x.user_id "
            "AND e.ts >= x.exposed_at AND e.type = 'purchase' WHERE x.experiment_key = :key GROUP BY x.arm, x.user_id"
        )
        if metric == "purchase_conversion":
            return f"SELECT arm, {day_of('first_ts', dialect)} AS day, COUNT(*) FROM ({per_user}) u GROUP BY arm, day"
        return (
            f"SELECT x.arm, {day_of('e.ts', dialect)} AS day, SUM(COALESCE(e.value, 0)) FROM exposures x JOIN events e "
            "ON e.user_id = x.user_id AND e.ts >= x.exposed_at AND e.type = 'purchase' WHERE x.experiment_key = :key GROUP BY x.arm, day"
        )
    if kind == "binary":
        return (
            f"SELECT arm, {day_of('first_positive_ts', dialect)} AS day, COUNT(*) FROM user_metric_totals "
            "WHERE experiment_key = :key AND metric = :metric AND total > 0 GROUP BY arm, day"
        )
    return (
        f"SELECT x.arm, {day_of('o.ts', dialect)} AS day, SUM(o.value) FROM outcomes o JOIN exposures x "
        "ON x.experiment_key = o.experiment_key AND x.user_id = o.user_id "
        "WHERE o.experiment_key = :key AND o.metric = :metric GROUP BY x.arm, day"
    )


def arm_aggregates(db: Database, exp: Experiment, metric: Metric, now: float) -> dict[str, ArmAggregate]:
    """Per-arm sums of the metric over exposed users, by aggregate queries only."""
    params = {"key": exp.key, "metric": metric.key, "mature_before": now - (RETENTION_DAYS.get(metric.key, -1) + 1) * DAY}
    with db.read() as session:
        if exp.type == "ab" and not metric.builtin:
            users: dict[str, int] = dict(session.execute(text(EXPOSED_PER_ARM), params).tuples().all())
            sums = {r[0]: r[1:] for r in session.execute(text(TOTALS_PER_ARM), params)}
            out = {}
            for arm, n in users.items():
                total, sumsq, positives = sums.get(arm, (0, 0, 0))
                out[arm] = ArmAggregate(int(n), float(total or 0), float(sumsq or 0), int(positives or 0))
            return out
        rows = session.execute(text(per_arm_joined(metric.key, metric.builtin)), params).all()
    return {r[0]: ArmAggregate(int(r[1]), float(r[2] or 0), float(r[3] or 0), int(r[4] or 0), float(r[5] or 0), float(r[6] or 0), float(r[7] or 0)) for r in rows}


def daily_rows(db: Database, key: str, metric: Metric) -> tuple[list[Any], list[Any]]:
    """(arm, day, new exposures) and (arm, day, what the metric gained) rows of one experiment."""
    params = {"key": key, "metric": metric.key}
    with db.read() as session:
        exposed = list(session.execute(text(daily_exposures(db.dialect)), params).all())
        gained = list(session.execute(text(daily_values(metric.key, metric.kind, metric.builtin, db.dialect)), params).all())
    return exposed, gained


def retention_rows(db: Database, key: str, days: int, now: float) -> tuple[list[Any], list[Any]]:
    """(arm, whole days since exposure, users) and (arm, day k, users active on day k whose day k has ended) for k in 1..days."""
    age = day_of(f"(:now - exposed_at)", db.dialect)
    k = day_of("(e.ts - x.exposed_at)", db.dialect)
    exposed = f"SELECT arm, {age} AS age, COUNT(*) FROM exposures WHERE experiment_key = :key GROUP BY arm, age"
    active = (
        f"SELECT arm, k, COUNT(DISTINCT user_id) FROM (SELECT x.arm AS arm, x.user_id AS user_id, x.exposed_at AS exposed_at, {k} AS k "
        "FROM exposures x JOIN events e ON e.user_id = x.user_id AND e.ts >= x.exposed_at + :day AND e.ts < x.exposed_at + :horizon "
        "WHERE x.experiment_key = :key) t WHERE t.exposed_at + (t.k + 1) * :day <= :now GROUP BY arm, k"
    )
    params = {"key": key, "now": now, "day": DAY, "horizon": (days + 1) * DAY}
    with db.read() as session:
        return list(session.execute(text(exposed), params).all()), list(session.execute(text(active), params).all())
