"""Assignment: sticky arms from a hash (A/B) or a bandit policy, and exposures recorded once.

The hot path is one read: the experiment's status and revision joined with the
user's exposure. A returning user needs nothing else. A new user is placed by
hash (A/B) or by the policy over the arms' current statistics (bandit), and
the exposure is written with INSERT ... ON CONFLICT DO NOTHING; when two
workers race on a user's first request, the loser re-reads the winner's row,
so both answer the same arm.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import text

from bandits.base import ArmStats, with_floor
from bandits.registry import make_policy
from experiments.assignment import ab_arm, enrolled, pick, unit_draw
from experiments.definitions import Experiment
from service.api import KeyCheck, read_with_key
from service.db import Database
from service.errors import not_found
from service.experiment_codec import from_row
from service.models import Experiment as ExperimentRow
from service.schemas.common import iso

# Tagged and ordered (tag, text, text, number, ...) so that the caller's key row can ride along.
_STATE = (
    "SELECT 0, e.status, x.arm, e.revision, x.probability, x.exposed_at FROM experiments e "
    "LEFT JOIN exposures x ON x.experiment_key = e.key AND x.user_id = ? WHERE e.key = ?"
)
_STATS = "SELECT arm, pulls, reward_sum, reward_sumsq FROM bandit_arm_stats WHERE experiment_key = ?"
# The status check inside the insert closes the race with a concurrent pause or stop.
_EXPOSE = text(
    "INSERT INTO exposures (experiment_key, user_id, arm, probability, exposed_at) "
    "SELECT CAST(:key AS VARCHAR(64)), CAST(:user AS VARCHAR(128)), CAST(:arm AS VARCHAR(64)), "
    "CAST(:p AS DOUBLE PRECISION), CAST(:ts AS DOUBLE PRECISION) WHERE EXISTS "
    "(SELECT 1 FROM experiments WHERE key = :key AND status = 'running') "
    "ON CONFLICT (experiment_key, user_id) DO NOTHING"
)
_PULL = text("UPDATE bandit_arm_stats SET pulls = pulls + 1 WHERE experiment_key = :key AND arm = :arm")
_EXPOSED = text("SELECT arm, probability, exposed_at FROM exposures WHERE experiment_key = :key AND user_id = :user")


@dataclass(frozen=True)
class Definition:
    """A parsed experiment at one revision, with what assignment needs precomputed."""

    revision: int
    experiment: Experiment
    salt: str
    arms_json: dict[str, dict[str, Any]]
    weights: tuple[float, ...]


class DefinitionCache:
    """Parsed definitions keyed by (key, revision): a revision never changes, so neither do answers."""

    def __init__(self) -> None:
        self._items: dict[str, Definition] = {}
        self._lock = threading.Lock()

    def current(self, db: Database, key: str) -> tuple[Definition, str]:
        """The experiment's definition at its current revision and its status; 404 if it does not exist."""
        rows = db.fetch("SELECT status, revision FROM experiments WHERE key = ?", (key,))
        if not rows:
            raise not_found("experiment", key)
        status, revision = rows[0]
        return self.get(db, key, revision), status

    def get(self, db: Database, key: str, revision: int) -> Definition:
        """The definition at `revision`, loading it once per process."""
        cached = self._items.get(key)
        if cached is not None and cached.revision == revision:
            return cached
        with db.read() as session:
            row = session.get(ExperimentRow, key)
        if row is None:
            raise not_found("experiment", key)
        exp = from_row(row)
        loaded = Definition(row.revision, exp, row.salt, {a["key"]: a for a in row.arms}, tuple(a.weight for a in exp.arms))
        with self._lock:
            self._items[key] = loaded
        return loaded


def _answer(key: str, user_id: str, d: Definition | None, arm: str | None, probability: float | None, exposed_at: float | None, reason: str | None = None) -> dict[str, Any]:
    if arm is None or d is None:
        return {"experiment": key, "user_id": user_id, "enrolled": False, "arm": None, "reason": reason}
    spec = d.arms_json[arm]
    return {
        "experiment": key,
        "user_id": user_id,
        "enrolled": True,
        "arm": arm,
        "payload": spec.get("payload") or {},
        "schedule": spec.get("schedule"),
        "probability": probability,
        "exposed_at": iso(exposed_at),
    }


def bandit_allocation(db: Database, d: Definition) -> np.ndarray:
    """The bandit's probabilities for the next new user, floor included."""
    exp = d.experiment
    assert exp.bandit is not None
    rows = {r[0]: r[1:] for r in db.fetch(_STATS, (exp.key,))}
    zero = (0, 0.0, 0.0)
    stats = ArmStats.of(*(list(col) for col in zip(*(rows.get(a.key, zero) for a in exp.arms))))
    policy = make_policy(exp.bandit.algorithm, exp.metric(exp.primary_metric).kind, exp.bandit.epsilon)
    return with_floor(policy.probabilities(stats), exp.bandit.min_probability)


def _choose(db: Database, d: Definition, user_id: str) -> tuple[str, float]:
    exp = d.experiment
    if exp.type == "ab":
        index = ab_arm(d.salt, exp.key, user_id, d.weights)
        return exp.arms[index].key, d.weights[index] / sum(d.weights)
    probabilities = bandit_allocation(db, d)
    index = pick(list(probabilities), unit_draw(d.salt, exp.key, user_id, "arm"))
    return exp.arms[index].key, float(probabilities[index])


def assign(
    db: Database, cache: DefinitionCache, key: str, user_id: str, now: float, api_key: KeyCheck | None = None
) -> dict[str, Any]:
    """The user's assignment in one experiment, recording the first exposure at `now`; `api_key` rides on the first read."""
    rows = read_with_key(db, _STATE, (user_id, key), api_key, width=6)
    if not rows:
        raise not_found("experiment", key)
    _, status, arm, revision, probability, exposed_at = rows[0]
    if status in ("draft", "stopped"):
        return _answer(key, user_id, None, None, None, None, "not_running")
    d = cache.get(db, key, revision)
    if arm is not None:
        return _answer(key, user_id, d, arm, probability, exposed_at)
    if status != "running":
        return _answer(key, user_id, d, None, None, None, "not_running")
    if not enrolled(d.salt, key, user_id, d.experiment.traffic):
        return _answer(key, user_id, d, None, None, None, "traffic")
    arm, probability = _choose(db, d, user_id)
    with db.write() as session:
        inserted = session.execute(_EXPOSE, {"key": key, "user": user_id, "arm": arm, "p": probability, "ts": now}).rowcount == 1  # type: ignore[attr-defined]
        if inserted and d.experiment.type == "bandit":
            session.execute(_PULL, {"key": key, "arm": arm})
        if not inserted:
            stored = session.execute(_EXPOSED, {"key": key, "user": user_id}).first()
            if stored is None:  # paused or stopped since the first read
                return _answer(key, user_id, d, None, None, None, "not_running")
            arm, probability, now = stored
    return _answer(key, user_id, d, arm, probability, now)
