"""Outcomes: idempotent batches that keep per-user totals and feed the bandit.

A user's value for a metric is the sum of their outcome values. The batch's
accepted outcomes are added to the users' running totals with atomic upserts
that return the new totals. A bandit's reward totals are also read before, under
the bandit's counting lock, so each user's value before the batch is known
exactly; the bandit's statistics then move by the change in the user's value
(for binary metrics, by one when the user crosses from 0 to converted).
Concurrent batches on the same users serialise on those rows, so no update is
lost on any number of workers or hosts.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from experiments.definitions import Experiment
from service.store.database import Database
from service.store.bandit_rewards import update_bandits
from service.store.exposures import counting_lock
from service.store.sql import ROUNDING_ERROR, USER_VALUE, chunks, exact_sum, run

# Multi-row statements with RETURNING: one round trip per chunk, and the database
# says exactly which rows it wrote, also when concurrent batches overlap.
_CHUNK = 500
_INSERT = (
    "INSERT INTO outcomes (outcome_id, experiment_key, user_id, metric, value, ts, received_at) VALUES {rows} "
    "ON CONFLICT (outcome_id) DO NOTHING RETURNING outcome_id"
)
_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?)"
# What each addition to a total loses to rounding (sql.ROUNDING_ERROR), added up in `total_low`, keeps a
# user's value the sum of their outcomes however they were batched, to about 32 digits (total_low rounds
# too): 1e12, 1e-5 and -1e12 in three batches had left a total of 0, not converted, where one batch of the
# three gives 1e-5.
_ADD = (
    "INSERT INTO user_metric_totals (experiment_key, metric, user_id, arm, total, first_positive_ts) VALUES {rows} "
    "ON CONFLICT (experiment_key, metric, user_id) DO UPDATE SET "
    "total = user_metric_totals.total + excluded.total, "
    f"total_low = user_metric_totals.total_low + {ROUNDING_ERROR.format(a='user_metric_totals.total', b='excluded.total')}, "
    # The earliest positive outcome whatever the order batches arrive in (the daily series dates a conversion by it).
    "first_positive_ts = CASE WHEN user_metric_totals.first_positive_ts IS NULL "
    "OR excluded.first_positive_ts < user_metric_totals.first_positive_ts THEN excluded.first_positive_ts "
    "ELSE user_metric_totals.first_positive_ts END "
    f"RETURNING experiment_key, metric, user_id, {USER_VALUE.format(t='user_metric_totals')}"
)
_ADD_ROW = "(?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class Counts:
    """What happened to a batch."""

    accepted: int
    duplicates: int
    ignored: int


def _exposures(session: Session, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The arm of every exposed (experiment, user) among `pairs`."""
    by_experiment: dict[str, list[str]] = defaultdict(list)
    for experiment, user in pairs:
        by_experiment[experiment].append(user)
    found: dict[tuple[str, str], str] = {}
    for experiment, users in by_experiment.items():
        for chunk in chunks(sorted(users), _CHUNK):
            marks = ", ".join(["?"] * len(chunk))
            rows = run(session, f"SELECT user_id, arm FROM exposures WHERE experiment_key = ? AND user_id IN ({marks})", [experiment, *chunk])
            found.update({(experiment, user): arm for user, arm in rows})
    return found


def _stops(session: Session, keys: set[str]) -> dict[str, float]:
    """When each stopped experiment among `keys` stopped: an outcome dated from then on is stored and counts in no result.

    A stop waits for the batches in flight and holds later ones until it commits (`settling.settle`),
    so a batch reads either no stop, and its outcomes dated after it are taken back by the stop, or the stop.
    """
    if not keys:
        return {}
    marks = ", ".join(["?"] * len(keys))
    rows = run(session, f"SELECT key, stopped_at FROM experiments WHERE key IN ({marks}) AND stopped_at IS NOT NULL", sorted(keys))
    return {key: float(stopped_at) for key, stopped_at in rows}


# The users with an outcome dated from the stop on (an index range of ix_outcomes_experiment_metric_ts, mostly
# empty), then their outcomes (ix_outcomes_experiment_user): the stop holds outcome batches back meanwhile.
_DATED_FROM = "SELECT DISTINCT metric, user_id FROM outcomes WHERE experiment_key = ? AND ts >= ?"
_OF_USERS = "SELECT metric, user_id, value, ts FROM outcomes WHERE experiment_key = ? AND user_id IN ({marks})"
_SET_TOTAL = text(
    "UPDATE user_metric_totals SET total = :high, total_low = :low, first_positive_ts = :first "
    "WHERE experiment_key = :key AND metric = :metric AND user_id = :user"
)


def withdraw_from(session: Session, key: str, stopped_at: float) -> None:
    """Take out of the totals what outcomes dated from the stop on had added (stamped ahead of the clock,
    received before the stop), in the stop's transaction: after it, none counts, as for those received later.

    Each such user's total is counted again from their outcomes dated before the stop, as two doubles:
    taking the later ones back by subtraction left what a batch holding outcomes from both sides had
    rounded away (1e-5 with 1e12 in one batch), or a remainder of the totals' own rounding.
    A stopped bandit's arm statistics keep them: they steer nothing any more, and its results read the totals.
    """
    before: dict[tuple[str, str], list[tuple[float, float]]] = {(m, u): [] for m, u in run(session, _DATED_FROM, [key, stopped_at])}
    for chunk in chunks(sorted({user for _, user in before}), _CHUNK):
        for metric, user, value, ts in run(session, _OF_USERS.format(marks=", ".join(["?"] * len(chunk))), [key, *chunk]):
            if (metric, user) in before and float(ts) < stopped_at:
                before[(metric, user)].append((float(value), float(ts)))
    for (metric, user), kept in sorted(before.items()):
        high, low = exact_sum([v for v, _ in kept])
        first = min((ts for v, ts in kept if v > 0), default=None)
        session.execute(_SET_TOTAL, {"high": high, "low": low, "first": first, "key": key, "metric": metric, "user": user})


def _insert_new(session: Session, outcomes: list[dict[str, Any]], now: float) -> set[str]:
    """Insert the outcomes; answer the ids that were new (the rest were already stored)."""
    written: set[str] = set()
    for chunk in chunks(outcomes, _CHUNK):
        params = [x for o in chunk for x in (o["outcome_id"], o["experiment"], o["user_id"], o["metric"], o["value"], o["ts"], now)]
        written.update(r[0] for r in run(session, _INSERT.format(rows=", ".join([_INSERT_ROW] * len(chunk))), params))
    return written


def _add_to_totals(session: Session, deltas: list[tuple[tuple[str, str, str], str, float, float | None]]) -> dict[tuple[str, str, str], float]:
    """Add each user's change to their running total; answer the new totals."""
    totals: dict[tuple[str, str, str], float] = {}
    for chunk in chunks(deltas, _CHUNK):
        params = [x for (experiment, metric, user), arm, delta, positive_ts in chunk for x in (experiment, metric, user, arm, delta, positive_ts)]
        rows = run(session, _ADD.format(rows=", ".join([_ADD_ROW] * len(chunk))), params)
        totals.update({(r[0], r[1], r[2]): float(r[3]) for r in rows})
    return totals


def record(db: Database, outcomes: Sequence[dict[str, Any]], definitions: dict[str, Experiment]) -> Counts:
    """Store a validated batch in one transaction and update totals and bandit statistics."""
    now = time.time()
    with db.write() as session:
        arms = _exposures(session, {(o["experiment"], o["user_id"]) for o in outcomes})
        # Of an id repeated in one batch, the first copy for an exposed user wins: a copy for a user never
        # exposed stores nothing, so it must not stand in for one that would.
        ids: set[str] = set()
        first: dict[str, dict[str, Any]] = {}
        for o in outcomes:
            ids.add(o["outcome_id"])
            if (o["experiment"], o["user_id"]) in arms:
                first.setdefault(o["outcome_id"], o)
        # Sorted by id: concurrent batches take row locks in one order (no deadlocks on PostgreSQL).
        exposed = [o for _, o in sorted(first.items())]
        written = _insert_new(session, exposed, now)
        stops = _stops(session, {o["experiment"] for o in exposed})
        values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        first_positive: dict[tuple[str, str, str], float] = {}
        for o in exposed:
            if o["outcome_id"] in written and o["ts"] < stops.get(o["experiment"], math.inf):
                key = (o["experiment"], o["metric"], o["user_id"])
                values[key].append(o["value"])
                if o["value"] > 0:
                    first_positive[key] = min(first_positive.get(key, math.inf), o["ts"])
        # A batch's change is its exact sum as two doubles, added one after the other: a user's value is then the
        # sum of their outcomes however they were batched (1e12 and 1e-5 in one batch had lost the 1e-5), the
        # same as a stop counts it again (`withdraw_from`). The second part is 0 for a lone outcome.
        parts = {k: exact_sum(v) for k, v in values.items()}
        deltas = [(k, arms[(k[0], k[2])], parts[k][0], first_positive.get(k)) for k in sorted(parts)]
        rewarding = [k for k, _, _, _ in deltas if definitions[k[0]].rewards_bandit(k[1])]
        counting_lock(session, {k[0] for k in rewarding})
        before = _totals(session, rewarding)  # under the bandits' locks: nobody else moves these totals meanwhile
        totals = _add_to_totals(session, deltas)
        totals.update(_add_to_totals(session, [(k, arm, parts[k][1], None) for k, arm, _, _ in deltas if parts[k][1] != 0]))
        update_bandits(session, definitions, deltas, totals, before)
        # An id already stored is a duplicate whoever this copy names: counted as ignored, it would tell the
        # storefront to send it again after an exposure, under an id that can never be stored.
        taken = _stored(session, ids - first.keys())
    accepted = len(written)
    ignored = len(ids) - len(exposed) - len(taken)
    return Counts(accepted, len(outcomes) - accepted - ignored, ignored)


def _stored(session: Session, outcome_ids: set[str]) -> set[str]:
    """Which of these outcome ids are stored."""
    found: set[str] = set()
    for chunk in chunks(sorted(outcome_ids), _CHUNK):
        found.update(r[0] for r in run(session, f"SELECT outcome_id FROM outcomes WHERE outcome_id IN ({', '.join(['?'] * len(chunk))})", chunk))
    return found


def _totals(session: Session, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], float]:
    """The stored totals of these (experiment, metric, user) keys; a user without one has 0.

    Read before the batch adds to them: the new total minus the batch's change is not the total
    before once rounding swallows it (1e-9 then 1e12 gives back 0, which would make the user's
    first reward look like a second user's).
    """
    users: dict[tuple[str, str], list[str]] = defaultdict(list)
    for experiment, metric, user in keys:
        users[(experiment, metric)].append(user)
    found: dict[tuple[str, str, str], float] = {}
    for (experiment, metric), ids in sorted(users.items()):
        for chunk in chunks(ids, _CHUNK):
            # A plain IN on the key's last column: SQLite scans the whole table for a row-value IN (VALUES ...).
            marks = ", ".join(["?"] * len(chunk))
            sql = f"SELECT user_id, {USER_VALUE.format(t='t')} FROM user_metric_totals t WHERE experiment_key = ? AND metric = ? AND user_id IN ({marks})"
            found.update({(experiment, metric, r[0]): float(r[1]) for r in run(session, sql, [experiment, metric, *chunk])})
    return found
