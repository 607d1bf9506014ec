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
from service.store.exposures import counting_lock
from service.store.sql import chunks, run

# Multi-row statements with RETURNING: one round trip per chunk, and the database
# says exactly which rows it wrote, also when concurrent batches overlap.
_CHUNK = 500
_INSERT = (
    "INSERT INTO outcomes (outcome_id, experiment_key, user_id, metric, value, ts, received_at) VALUES {rows} "
    "ON CONFLICT (outcome_id) DO NOTHING RETURNING outcome_id"
)
_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?)"
# What a + b loses to rounding, exactly (Fast2Sum: the larger operand first). Added up in `total_low`, it
# keeps a user's value the sum of their outcomes however they were batched, to about 32 digits (total_low
# rounds too): 1e12, 1e-5 and -1e12 in three batches had left a total of 0, not converted, where one
# batch of the three gives 1e-5.
_ROUNDING_ERROR = "(CASE WHEN ABS({a}) >= ABS({b}) THEN ({a} - ({a} + {b})) + {b} ELSE ({b} - ({a} + {b})) + {a} END)"
# A user's value of a reported metric, from their row of user_metric_totals named {t}.
USER_VALUE = "({t}.total + {t}.total_low)"
_ADD = (
    "INSERT INTO user_metric_totals (experiment_key, metric, user_id, arm, total, first_positive_ts) VALUES {rows} "
    "ON CONFLICT (experiment_key, metric, user_id) DO UPDATE SET "
    "total = user_metric_totals.total + excluded.total, "
    f"total_low = user_metric_totals.total_low + {_ROUNDING_ERROR.format(a='user_metric_totals.total', b='excluded.total')}, "
    # The earliest positive outcome whatever the order batches arrive in (the daily series dates a conversion by it).
    "first_positive_ts = CASE WHEN user_metric_totals.first_positive_ts IS NULL "
    "OR excluded.first_positive_ts < user_metric_totals.first_positive_ts THEN excluded.first_positive_ts "
    "ELSE user_metric_totals.first_positive_ts END "
    f"RETURNING experiment_key, metric, user_id, {USER_VALUE.format(t='user_metric_totals')}"
)
_ADD_ROW = "(?, ?, ?, ?, ?, ?)"
_MOMENTS = text(
    "UPDATE bandit_arm_stats SET reward_sum = reward_sum + :sum, reward_sumsq = reward_sumsq + :sumsq, reward_m2 = :m2, reward_count = :count "
    "WHERE experiment_key = :experiment AND arm = :arm"
)
_RECOUNTED = text(
    "UPDATE bandit_arm_stats SET reward_sum = :sum, reward_sumsq = :sumsq, reward_m2 = :m2, reward_count = :count "
    "WHERE experiment_key = :experiment AND arm = :arm"
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

    A stop waits for the batches in flight and holds later ones until it commits (`experiments._settle`),
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
        high, low = _exact_sum([v for v, _ in kept])
        first = min((ts for v, ts in kept if v > 0), default=None)
        session.execute(_SET_TOTAL, {"high": high, "low": low, "first": first, "key": key, "metric": metric, "user": user})


def _exact_sum(values: list[float]) -> tuple[float, float]:
    """The sum of `values` as two doubles, the rounded sum and what it rounded away: about twice a double's precision."""
    high = math.fsum(values)
    return high, math.fsum([*values, -high])


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
        parts = {k: _exact_sum(v) for k, v in values.items()}
        deltas = [(k, arms[(k[0], k[2])], parts[k][0], first_positive.get(k)) for k in sorted(parts)]
        rewarding = [k for k, _, _, _ in deltas if definitions[k[0]].rewards_bandit(k[1])]
        counting_lock(session, {k[0] for k in rewarding})
        before = _totals(session, rewarding)  # under the bandits' locks: nobody else moves these totals meanwhile
        totals = _add_to_totals(session, deltas)
        totals.update(_add_to_totals(session, [(k, arm, parts[k][1], None) for k, arm, _, _ in deltas if parts[k][1] != 0]))
        _update_bandits(session, definitions, deltas, totals, before)
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


def _update_bandits(
    session: Session, definitions: dict[str, Experiment], deltas: list[tuple[tuple[str, str, str], str, float, float | None]],
    totals: dict[tuple[str, str, str], float], before: dict[tuple[str, str, str], float],
) -> None:
    """Move each bandit arm's statistics by the change in its users' values of the primary metric; the caller holds the bandits' counting locks."""
    changes: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    binary: dict[tuple[str, str], float] = defaultdict(float)
    arrived: dict[str, list[str]] = defaultdict(list)
    for key, arm, _, _ in deltas:
        experiment, metric, user = key
        exp = definitions[experiment]
        if not exp.rewards_bandit(metric):
            continue
        if exp.bandit is not None and exp.bandit.attribution_hours is not None:
            arrived[experiment].append(user)
        new, old = totals[key], before.get(key, 0.0)
        if exp.metric(metric).kind == "binary":
            binary[(experiment, arm)] += float(new > 0) - float(old > 0)
        else:
            changes[(experiment, arm)].append((old, new))
    for experiment, users in sorted(arrived.items()):
        _count_waiting_pulls(session, experiment, users)
    for (experiment, arm), change in sorted(binary.items()):
        if change:
            session.execute(_REWARD, {"experiment": experiment, "arm": arm, "sum": change, "sumsq": change})
    for (experiment, arm), pairs in sorted(changes.items()):
        _move_moments(session, experiment, arm, definitions[experiment].primary_metric, pairs)


def _count_waiting_pulls(session: Session, experiment: str, users: list[str]) -> None:
    """Pulls that were waiting for their outcome count from now on: the outcome arrived."""
    per_arm: dict[str, int] = defaultdict(int)
    for chunk in chunks(sorted(users), _CHUNK):
        marks = ", ".join(["?"] * len(chunk))
        sql = f"UPDATE exposures SET counted = ? WHERE experiment_key = ? AND NOT counted AND user_id IN ({marks}) RETURNING arm"
        for (arm,) in run(session, sql, [True, experiment, *chunk]):
            per_arm[arm] += 1
    for arm, n in sorted(per_arm.items()):
        session.execute(text("UPDATE bandit_arm_stats SET pulls = pulls + :n WHERE experiment_key = :experiment AND arm = :arm"), {"n": n, "experiment": experiment, "arm": arm})


# A removal that subtracts a term this many times larger than the spread left has cancelled the spread's
# digits away (1e12 refunded among rewards of 50: terms of 1e24, errors of 1e8): the arm's moments are
# then counted again from its users' totals.
_DIGITS_LOST = 1e6


def _move_moments(session: Session, experiment: str, arm: str, metric: str, pairs: list[tuple[float, float]]) -> None:
    """Apply users' value changes (old, new) to an arm's sums and to the moments of its non-zero rewards, under the row's lock.

    A pull waiting for its reward is a zero. Zeros are kept out of `reward_m2` (the rewarded
    users' squared deviations from their own mean) and merged back when the arm is read: a
    user's first reward then joins that group by a Welford step instead of turning a zero into
    1e9, which would cancel terms of 1e18 and lose the variance of rewards far from zero.
    """
    lock = "" if session.get_bind().dialect.name == "sqlite" else " FOR UPDATE"  # SQLite already holds the write lock
    row = session.execute(
        text(f"SELECT reward_sum, reward_m2, reward_count FROM bandit_arm_stats WHERE experiment_key = :experiment AND arm = :arm{lock}"),
        {"experiment": experiment, "arm": arm},
    ).first()
    if row is None:
        return
    total, m2, count = float(row[0]), float(row[1]), int(row[2])
    mean = total / count if count else 0.0
    removed = 0.0
    for old, new in pairs:
        if old != 0:  # Welford removal, in the form that keeps the mean's digits
            if count <= 1:
                count, mean, m2 = 0, 0.0, 0.0
            else:
                before, count = mean, count - 1
                mean = before - (old - before) / count
                term = (old - mean) * (old - before)
                m2 -= term
                removed = max(removed, abs(term))
        if new != 0:
            count += 1
            before = mean
            mean = before + (new - before) / count
            m2 += (new - before) * (new - mean)
    # Below count * mean² * 1e-15 a spread is rounding noise of the values themselves (equal rewards):
    # nothing is lost there, and a recount would scan the arm for nothing.
    if removed > max(m2, count * mean * mean * 1e-15) * _DIGITS_LOST:
        _recount_moments(session, experiment, arm, metric)
        return
    session.execute(
        _MOMENTS,
        {
            "experiment": experiment,
            "arm": arm,
            "sum": sum(new - old for old, new in pairs),
            "sumsq": sum(new * new - old * old for old, new in pairs),
            "m2": max(m2, 0.0),
            "count": count,
        },
    )


def _recount_moments(session: Session, experiment: str, arm: str, metric: str) -> None:
    """Set an arm's reward moments from its users' stored totals (already moved by this batch), exactly:
    sums in full precision and deviations from the mean they give."""
    sql = (
        f"SELECT {USER_VALUE.format(t='t')} FROM user_metric_totals t JOIN exposures e ON e.experiment_key = t.experiment_key AND e.user_id = t.user_id "
        f"WHERE t.experiment_key = ? AND t.metric = ? AND e.arm = ? AND {USER_VALUE.format(t='t')} <> 0"
    )
    values = [float(r[0]) for r in run(session, sql, [experiment, metric, arm])]
    mean = math.fsum(values) / len(values) if values else 0.0
    session.execute(
        _RECOUNTED,
        {
            "experiment": experiment, "arm": arm, "sum": math.fsum(values), "sumsq": math.fsum(v * v for v in values),
            "m2": math.fsum((v - mean) ** 2 for v in values), "count": len(values),
        },
    )
