"""Exposures (a user's first assignment) and the bandit arms' statistics.

The hot read is one query: the experiment's stamp (status, revision, salt) joined
with the user's exposure. The exposure is written with INSERT ... ON CONFLICT DO
NOTHING, and the stamp check inside the insert closes the race with a concurrent
pause, stop or change (which, on PostgreSQL, also waits for the inserts in flight:
`settling.settle`); when two workers race on a user's first request,
the loser reads the winner's row, so both answer the same arm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.store.database import Database
from service.store.experiments import Stamp

_STATE = (
    "SELECT e.status, e.revision, e.salt, x.arm, x.probability, x.exposed_at FROM experiments e "
    "LEFT JOIN exposures x ON x.experiment_key = e.key AND x.user_id = ? WHERE e.key = ?"
)
_STATS = "SELECT arm, pulls, reward_sum, reward_sumsq, reward_m2, reward_count FROM bandit_arm_stats WHERE experiment_key = ?"
_EXPOSE = text(
    "INSERT INTO exposures (experiment_key, user_id, arm, probability, exposed_at, counted) "
    "SELECT CAST(:key AS VARCHAR(64)), CAST(:user AS VARCHAR(128)), CAST(:arm AS VARCHAR(64)), "
    "CAST(:p AS DOUBLE PRECISION), CAST(:ts AS DOUBLE PRECISION), :counted WHERE EXISTS "
    "(SELECT 1 FROM experiments WHERE key = :key AND status = 'running' AND revision = :revision AND salt = :salt) "
    "ON CONFLICT (experiment_key, user_id) DO NOTHING"
)
_PULL = text("UPDATE bandit_arm_stats SET pulls = pulls + 1 WHERE experiment_key = :key AND arm = :arm")
_EXPOSED = text("SELECT arm, probability, exposed_at FROM exposures WHERE experiment_key = :key AND user_id = :user")
# Served by ix_exposures_arm (experiment_key, arm): an index-only scan, no table rows.
_EXPOSURE_COUNTS = "SELECT experiment_key, arm, COUNT(*) FROM exposures GROUP BY experiment_key, arm"


@dataclass(frozen=True)
class Exposure:
    """A user's arm, its propensity and when they were first exposed."""

    arm: str
    probability: float
    exposed_at: float


@dataclass(frozen=True)
class ExposureState:
    """An experiment's stamp (status, revision, salt), and the user's exposure if any."""

    stamp: Stamp
    exposure: Exposure | None


def state(db: Database, key: str, user_id: str) -> ExposureState | None:
    """The experiment's stamp with the user's exposure; None when the experiment does not exist."""
    rows = db.fetch(_STATE, (user_id, key))
    if not rows:
        return None
    status, revision, salt, arm = rows[0][:4]
    return ExposureState(Stamp(status, int(revision), salt), _exposure(rows[0][3:]) if arm is not None else None)


def arm_stats(db: Database, key: str) -> dict[str, tuple[int, float, float, float]]:
    """Each bandit arm's (pulls, reward sum, reward sum of squares, sum of squared deviations from its mean)."""
    return {r[0]: (int(r[1]), float(r[2]), float(r[3]), _with_zeros(int(r[1]), float(r[2]), float(r[4]), int(r[5]))) for r in db.fetch(_STATS, (key,))}


def _with_zeros(pulls: int, total: float, m2: float, rewarded: int) -> float:
    """The centred second moment over every pull: the rewarded users' own, merged with the zeros of the rest."""
    zeros = pulls - rewarded
    if rewarded <= 0 or zeros <= 0:
        return m2
    mean = total / rewarded
    return m2 + mean * mean * rewarded * zeros / pulls


def exposure_counts(db: Database) -> dict[str, dict[str, int]]:
    """Exposed users per experiment and arm."""
    counts: dict[str, dict[str, int]] = {}
    for key, arm, users in db.fetch(_EXPOSURE_COUNTS):
        counts.setdefault(key, {})[arm] = int(users)
    return counts


# PostgreSQL: the exposure, the bandit pull and the answer in one autocommit statement; a row stored
# before the statement began is its answer too. Only a concurrent winner's row, newer than the
# statement's snapshot, needs a second read.
_EXPOSE_ONE = (
    "WITH inserted AS (INSERT INTO exposures (experiment_key, user_id, arm, probability, exposed_at, counted) "
    "SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM experiments WHERE key = ? AND status = 'running' AND revision = ? AND salt = ?) "
    "ON CONFLICT (experiment_key, user_id) DO NOTHING RETURNING arm, probability, exposed_at), "
    "pulled AS (UPDATE bandit_arm_stats SET pulls = pulls + 1 WHERE ? AND experiment_key = ? AND arm IN (SELECT arm FROM inserted)) "
    "SELECT arm, probability, exposed_at FROM inserted UNION ALL "
    "SELECT arm, probability, exposed_at FROM exposures WHERE experiment_key = ? AND user_id = ? AND NOT EXISTS (SELECT 1 FROM inserted)"
)
_EXPOSED_ONE = "SELECT arm, probability, exposed_at FROM exposures WHERE experiment_key = ? AND user_id = ?"


def expose(db: Database, key: str, chosen_by: Stamp, user_id: str, arm: str, probability: float, now: float, counts_pull: bool, waits: bool = False) -> Exposure | None:
    """Record the first exposure, or answer the one already stored.

    None when there is none and the experiment is no longer running as `chosen_by`, the stamp of the
    definition the arm was chosen by: a paused, stopped or changed experiment never enrols by an older one.

    `counts_pull` adds the pull to the bandit arm's statistics now; `waits` leaves it for its
    outcome or attribution window instead (see `mature` and `service.store.outcomes`).
    """
    counts_pull = counts_pull and not waits
    if not db.is_sqlite:
        rows = db.write_one(_EXPOSE_ONE, (key, user_id, arm, probability, now, not waits, key, chosen_by.revision, chosen_by.salt, counts_pull, key, key, user_id))
        rows = rows or db.fetch(_EXPOSED_ONE, (key, user_id))
        return _exposure(rows[0]) if rows else None
    # SQLite serialises writers: a stored exposure is answered from a read, without taking the write lock.
    stored_rows = db.fetch(_EXPOSED_ONE, (key, user_id))
    if stored_rows:
        return _exposure(stored_rows[0])
    with db.write() as session:
        params = {"key": key, "revision": chosen_by.revision, "salt": chosen_by.salt, "user": user_id, "arm": arm, "p": probability, "ts": now, "counted": not waits}
        inserted = session.execute(_EXPOSE, params).rowcount == 1  # type: ignore[attr-defined]
        if inserted:
            if counts_pull:
                session.execute(_PULL, {"key": key, "arm": arm})
            return Exposure(arm, probability, now)
        stored = session.execute(_EXPOSED, {"key": key, "user": user_id}).first()
    return _exposure(stored) if stored is not None else None


def _exposure(row: Sequence[Any]) -> Exposure:
    return Exposure(row[0], float(row[1]), float(row[2]))


_MATURE = text("UPDATE exposures SET counted = :yes WHERE experiment_key = :key AND NOT counted AND exposed_at <= :before RETURNING arm")
_PULLS = text("UPDATE bandit_arm_stats SET pulls = pulls + :n WHERE experiment_key = :key AND arm = :arm")


def counting_lock(session: Session, keys: Iterable[str], wait: bool = True) -> bool:
    """Hold, until the transaction ends, each bandit's right to count its waiting pulls; False if `wait` is off and one is taken.

    Maturation and outcome batches both move waiting exposures to counted and then add to their
    arms, each in an order of its own; on PostgreSQL two of them on one bandit could deadlock, so
    they take this lock first, in one order. SQLite serialises writers already.
    """
    if session.get_bind().dialect.name == "sqlite":
        return True
    for key in sorted(set(keys)):
        params = {"key": f"counting:{key}"}
        if wait:
            session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 7))"), params)
        elif not session.execute(text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 7))"), params).scalar():
            return False
    return True


def mature(db: Database, key: str, before: float) -> int:
    """Count the waiting pulls of users exposed at or before `before` (their attribution window has passed); answer how many.

    Skipped (0) while an outcome batch is counting the same bandit: the next assignment matures them.
    """
    with db.write() as session:
        if not counting_lock(session, [key], wait=False):
            return 0
        arms = [r[0] for r in session.execute(_MATURE, {"key": key, "before": before, "yes": True})]
        for arm in sorted(set(arms)):
            session.execute(_PULLS, {"key": key, "arm": arm, "n": arms.count(arm)})
    return len(arms)
