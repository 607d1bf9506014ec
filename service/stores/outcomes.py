"""Outcomes: idempotent batches that keep per-user totals and feed the bandit.

A user's value for a metric is the sum of their outcome values. Each accepted
outcome is added to the user's running total with one atomic upsert that
returns the new total, so the total before it is known exactly; the bandit's
statistics then move by the change in the user's value (for binary metrics,
by one when the user crosses from 0 to converted). Concurrent batches on the
same users serialise on those rows, so no update is lost on any number of
workers or hosts.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from experiments.definitions import Experiment
from service.db import Database
from service.errors import ApiError

_INSERT = text(
    "INSERT INTO outcomes (outcome_id, experiment_key, user_id, metric, value, ts, received_at) "
    "VALUES (:outcome_id, :experiment, :user_id, :metric, :value, :ts, :now) ON CONFLICT (outcome_id) DO NOTHING"
)
_ADD = text(
    "INSERT INTO user_metric_totals (experiment_key, metric, user_id, arm, total, first_positive_ts) "
    "VALUES (:experiment, :metric, :user_id, :arm, :delta, :positive_ts) "
    "ON CONFLICT (experiment_key, metric, user_id) DO UPDATE SET "
    "total = user_metric_totals.total + excluded.total, "
    "first_positive_ts = CASE WHEN user_metric_totals.first_positive_ts IS NULL "
    "AND user_metric_totals.total + excluded.total > 0 THEN excluded.first_positive_ts "
    "ELSE user_metric_totals.first_positive_ts END "
    "RETURNING total"
)
_REWARD = text(
    "UPDATE bandit_arm_stats SET reward_sum = reward_sum + :sum, reward_sumsq = reward_sumsq + :sumsq "
    "WHERE experiment_key = :experiment AND arm = :arm"
)


@dataclass(frozen=True)
class Counts:
    """What happened to a batch."""

    accepted: int
    duplicates: int
    ignored: int


def check_batch(outcomes: Sequence[dict[str, Any]], definitions: dict[str, Experiment]) -> None:
    """Refuse the whole batch (422, naming each index) if any outcome names an unknown experiment or metric."""
    details = []
    for i, o in enumerate(outcomes):
        exp = definitions.get(o["experiment"])
        if exp is None:
            details.append({"field": f"outcomes.{i}.experiment", "index": i, "message": f"no experiment {o['experiment']!r}"})
        elif exp.reported_metric(o["metric"]) is None:
            known = ", ".join(m.key for m in exp.metrics if not m.builtin)
            why = "is built in (derived from events)" if o["metric"] in {m.key for m in exp.metrics} else f"is not a metric of this experiment (reported metrics: {known})"
            details.append({"field": f"outcomes.{i}.metric", "index": i, "message": f"{o['metric']!r} {why}"})
    if details:
        first = details[0]
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        raise ApiError(422, f"{first['field']}: {first['message']}{more}", details=details)


def _exposures(session: Session, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    by_experiment: dict[str, list[str]] = defaultdict(list)
    for experiment, user in pairs:
        by_experiment[experiment].append(user)
    found: dict[tuple[str, str], str] = {}
    for experiment, users in by_experiment.items():
        for start in range(0, len(users), 500):
            chunk = users[start : start + 500]
            marks = ", ".join(f":u{i}" for i in range(len(chunk)))
            rows = session.execute(
                text(f"SELECT user_id, arm FROM exposures WHERE experiment_key = :e AND user_id IN ({marks})"),
                {"e": experiment, **{f"u{i}": u for i, u in enumerate(chunk)}},
            )
            found.update({(experiment, user): arm for user, arm in rows})
    return found


def record(db: Database, outcomes: Sequence[dict[str, Any]], definitions: dict[str, Experiment]) -> Counts:
    """Store a validated batch in one transaction and update totals and bandit statistics."""
    now = time.time()
    unique: dict[str, dict[str, Any]] = {}
    for o in outcomes:  # the first of repeated ids in one batch wins
        unique.setdefault(o["outcome_id"], o)
    accepted, duplicates, ignored = 0, len(outcomes) - len(unique), 0
    deltas: dict[tuple[str, str, str], list[float]] = {}
    with db.write() as session:
        arms = _exposures(session, {(o["experiment"], o["user_id"]) for o in unique.values()})
        # Inserting in id order gives concurrent batches one lock order (no deadlocks on PostgreSQL).
        for _, o in sorted(unique.items()):
            if (o["experiment"], o["user_id"]) not in arms:
                ignored += 1
                continue
            if session.execute(_INSERT, {**o, "now": now}).rowcount == 0:  # type: ignore[attr-defined]
                duplicates += 1
                continue
            accepted += 1
            entry = deltas.setdefault((o["experiment"], o["metric"], o["user_id"]), [0.0, float("inf")])
            entry[0] += o["value"]
            if o["value"] > 0:
                entry[1] = min(entry[1], o["ts"])
        bandit: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        # Sorted keys give every transaction the same lock order, so concurrent batches cannot deadlock.
        for (experiment, metric, user), (delta, positive_ts) in sorted(deltas.items()):
            arm = arms[(experiment, user)]
            new = float(
                session.execute(
                    _ADD,
                    {"experiment": experiment, "metric": metric, "user_id": user, "arm": arm, "delta": delta, "positive_ts": positive_ts if positive_ts != float("inf") else None},
                ).scalar_one()
            )
            exp = definitions[experiment]
            if exp.type == "bandit" and metric == exp.primary_metric:
                old = new - delta
                if exp.metric(metric).kind == "binary":
                    change = float(new > 0) - float(old > 0)
                    bandit[(experiment, arm)][0] += change
                    bandit[(experiment, arm)][1] += change
                else:
                    bandit[(experiment, arm)][0] += delta
                    bandit[(experiment, arm)][1] += new * new - old * old
        for (experiment, arm), (total, sumsq) in sorted(bandit.items()):
            if total or sumsq:
                session.execute(_REWARD, {"experiment": experiment, "arm": arm, "sum": total, "sumsq": sumsq})
    return Counts(accepted, duplicates, ignored)
