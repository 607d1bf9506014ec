"""Results over time in SQL: per arm and UTC day, and per arm and day since exposure (the per-arm moments are in arm_moments).

Reported metrics read the per-user running totals that outcomes maintain;
built-in metrics are derived from events after each user's exposure. Either
way the database returns one row per arm and day, never per user.
"""
from __future__ import annotations

import math

from typing import Any

from sqlalchemy import text

from experiments.definitions import Metric
from experiments.definitions import RETENTION_DAYS
from service.store.arm_moments import BOUGHT, DAY
from service.store.database import Database
from service.store.sql import USER_VALUE

__all__ = ["DAY", "daily_rows", "retention_rows"]


def day_of(column: str, dialect: str) -> str:
    """The UTC day number of an epoch column (CAST truncates on SQLite, rounds on PostgreSQL)."""
    return f"CAST({column} / {DAY} AS INTEGER)" if dialect == "sqlite" else f"FLOOR({column} / {DAY})"


def daily_exposures(dialect: str) -> str:
    """New exposures per arm and day (an exposure dated ahead of the server's clock counts on today, see `series.daily`)."""
    return f"SELECT x.arm, {day_of('x.exposed_at', dialect)} AS day, COUNT(*) FROM exposures x WHERE x.experiment_key = :key GROUP BY x.arm, day"


def daily_values(metric: str, kind: str, builtin: bool, dialect: str) -> str:
    """Per arm and day, what the metric gained: value summed (continuous) or users converted (binary)."""
    if builtin:
        if metric == "purchase_conversion":  # each converted user on the day of their first purchase
            first_bought = (
                f"SELECT x.arm AS arm, MIN(e.ts) AS first_ts FROM exposures x JOIN events e ON e.user_id = x.user_id "
                f"AND e.ts >= x.exposed_at AND e.ts < :until AND {BOUGHT} WHERE x.experiment_key = :key GROUP BY x.arm, x.user_id"
            )
            return f"SELECT arm, {day_of('first_ts', dialect)} AS day, COUNT(*) FROM ({first_bought}) u GROUP BY arm, day"
        return (
            f"SELECT x.arm, {day_of('e.ts', dialect)} AS day, SUM(COALESCE(e.value, 0)) FROM exposures x JOIN events e "
            f"ON e.user_id = x.user_id AND e.ts >= x.exposed_at AND e.ts < :until AND e.type = 'purchase' WHERE x.experiment_key = :key GROUP BY x.arm, day"
        )
    # A reported outcome may be dated before its user's exposure: it counts from the day the user
    # joins the denominator, so no day's mean charges one user's value to others.
    if kind == "binary":
        return (
            f"SELECT t.arm, {day_of(_later('t.first_positive_ts', 'x.exposed_at'), dialect)} AS day, COUNT(*) FROM user_metric_totals t "
            "JOIN exposures x ON x.experiment_key = t.experiment_key AND x.user_id = t.user_id "
            f"WHERE t.experiment_key = :key AND t.metric = :metric AND {USER_VALUE.format(t='t')} > 0 GROUP BY t.arm, day"
        )
    return (
        f"SELECT x.arm, {day_of(_later('o.ts', 'x.exposed_at'), dialect)} AS day, SUM(o.value) FROM outcomes o JOIN exposures x "
        "ON x.experiment_key = o.experiment_key AND x.user_id = o.user_id "
        "WHERE o.experiment_key = :key AND o.metric = :metric AND o.ts < :until GROUP BY x.arm, day"
    )


def _later(a: str, b: str) -> str:
    """The later of two epoch columns (SQLite has no GREATEST)."""
    return f"(CASE WHEN {a} > {b} THEN {a} ELSE {b} END)"


def daily_rows(db: Database, key: str, metric: Metric, until: float | None = None) -> tuple[list[Any], list[Any]]:
    """(arm, day, new exposures) and (arm, day, what the metric gained before `until`, a stopped experiment's stop) rows of one experiment."""
    params = {"key": key, "metric": metric.key, "until": math.inf if until is None else until}
    with db.read() as session:
        exposed = list(session.execute(text(daily_exposures(db.dialect)), params).all())
        gained = list(session.execute(text(daily_values(metric.key, metric.kind, metric.builtin, db.dialect)), params).all())
    return exposed, gained


def retention_rows(db: Database, key: str, days: int, now: float) -> tuple[list[Any], list[Any]]:
    """(arm, whole days since exposure, users) and (arm, day k, users active on day k whose day k has ended) for k in 1..days."""
    age = day_of("(:now - exposed_at)", db.dialect)
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
