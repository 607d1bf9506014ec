"""A bandit arm's reward statistics, moved by the change in its users' values as outcomes arrive.

The caller holds the bandits' counting locks (`service.store.exposures.counting_lock`) and has read
each user's value before the batch, so each arm moves by exactly the change its users made.
"""
from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import text
from sqlalchemy.orm import Session

from experiments.definitions import Experiment
from service.store.sql import USER_VALUE, chunks, run

_CHUNK = 500
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


def update_bandits(
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
