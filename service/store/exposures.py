"""Exposures (a user's first assignment) and the bandit arms' statistics.

The hot read is one query: the experiment's status and revision joined with the
user's exposure. The exposure is written with INSERT ... ON CONFLICT DO NOTHING,
and the status check inside the insert closes the race with a concurrent pause
or stop; when two workers race on a user's first request, the loser reads the
winner's row, so both answer the same arm.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from service.store.database import Database

_STATE = (
    "SELECT e.status, e.revision, x.arm, x.probability, x.exposed_at FROM experiments e "
    "LEFT JOIN exposures x ON x.experiment_key = e.key AND x.user_id = ? WHERE e.key = ?"
)
_STATS = "SELECT arm, pulls, reward_sum, reward_sumsq, reward_m2, reward_count FROM bandit_arm_stats WHERE experiment_key = ?"
_EXPOSE = text(
    "INSERT INTO exposures (experiment_key, user_id, arm, probability, exposed_at, counted) "
    "SELECT CAST(:key AS VARCHAR(64)), CAST(:user AS VARCHAR(128)), CAST(:arm AS VARCHAR(64)), "
    "CAST(:p AS DOUBLE PRECISION), CAST(:ts AS DOUBLE PRECISION), :counted WHERE EXISTS "
    "(SELECT 1 FROM experiments WHERE key = :key AND status = 'running' AND revision = :revision) "
    "ON CONFLICT (experiment_key, user_id) DO NOTHING"
)
_PULL = text("UPDATE bandit_arm_stats SET pulls = pulls + 1 WHERE experiment_key = :key AND arm = :arm")
_EXPOSED = text("SELECT arm, probability, exposed_at FROM exposures WHERE experiment_key = :key AND user_id = :user")


@dataclass(frozen=True)
class Exposure:
    """A user's arm, its propensity and when they were first exposed."""

    arm: str
    probability: float
    exposed_at: float


@dataclass(frozen=True)
class ExposureState:
    """An experiment's status and revision, and the user's exposure if any."""

    status: str
    revision: int
    exposure: Exposure | None


def state(db: Database, key: str, user_id: str) -> ExposureState | None:
    """The experiment's status and revision with the user's exposure; None when the experiment does not exist."""
    rows = db.fetch(_STATE, (user_id, key))
    if not rows:
        return None
    status, revision, arm, probability, exposed_at = rows[0]
    exposure = Exposure(arm, float(probability), float(exposed_at)) if arm is not None else None
    return ExposureState(status, int(revision), exposure)


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


# PostgreSQL: the exposure, the bandit pull and the answer in one autocommit statement; a row stored
# before the statement began is its answer too. Only a concurrent winner's row, newer than the
# statement's snapshot, needs a second read.
_EXPOSE_ONE = (
    "WITH inserted AS (INSERT INTO exposures (experiment_key, user_id, arm, probability, exposed_at, counted) "
    "SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM experiments WHERE key = ? AND status = 'running' AND revision = ?) "
    "ON CONFLICT (experiment_key, user_id) DO NOTHING RETURNING arm, probability, exposed_at), "
    "pulled AS (UPDATE bandit_arm_stats SET pulls = pulls + 1 WHERE ? AND experiment_key = ? AND arm IN (SELECT arm FROM inserted)) "
    "SELECT arm, probability, exposed_at FROM inserted UNION ALL "
    "SELECT arm, probability, exposed_at FROM exposures WHERE experiment_key = ? AND user_id = ? AND NOT EXISTS (SELECT 1 FROM inserted)"
)
_EXPOSED_ONE = "SELECT arm, probability, exposed_at FROM exposures WHERE experiment_key = ? AND user_id = ?"


def expose(db: Database, key: str, revision: int, user_id: str, arm: str, probability: float, now: float, counts_pull: bool, waits: bool = False) -> Exposure | None:
    """Record the first exposure, or answer the one already stored.

    None when there is none and the experiment is no longer running at `revision`, the one the arm
    was chosen by: a paused, stopped or changed experiment never enrols by an older definition.

    `counts_pull` adds the pull to the bandit arm's statistics now; `waits` leaves it for its
    outcome or attribution window instead (see `mature` and `service.store.outcomes`).
    """
    counts_pull = counts_pull and not waits
    if not db.is_sqlite:
        rows = db.write_one(_EXPOSE_ONE, (key, user_id, arm, probability, now, not waits, key, revision, counts_pull, key, key, user_id))
        rows = rows or db.fetch(_EXPOSED_ONE, (key, user_id))
        return Exposure(rows[0][0], float(rows[0][1]), float(rows[0][2])) if rows else None
    with db.write() as session:
        params = {"key": key, "revision": revision, "user": user_id, "arm": arm, "p": probability, "ts": now, "counted": not waits}
        inserted = session.execute(_EXPOSE, params).rowcount == 1  # type: ignore[attr-defined]
        if inserted:
            if counts_pull:
                session.execute(_PULL, {"key": key, "arm": arm})
            return Exposure(arm, probability, now)
        stored = session.execute(_EXPOSED, {"key": key, "user": user_id}).first()
    return Exposure(stored[0], float(stored[1]), float(stored[2])) if stored is not None else None


_MATURE = text("UPDATE exposures SET counted = :yes WHERE experiment_key = :key AND NOT counted AND exposed_at <= :before RETURNING arm")
_PULLS = text("UPDATE bandit_arm_stats SET pulls = pulls + :n WHERE experiment_key = :key AND arm = :arm")


def mature(db: Database, key: str, before: float) -> int:
    """Count the waiting pulls of users exposed at or before `before` (their attribution window has passed); answer how many."""
    with db.write() as session:
        arms = [r[0] for r in session.execute(_MATURE, {"key": key, "before": before, "yes": True})]
        for arm in sorted(set(arms)):
            session.execute(_PULLS, {"key": key, "arm": arm, "n": arms.count(arm)})
    return len(arms)
