"""One user's history as the console's user page reads it: their newest events and every experiment they were exposed to."""
from __future__ import annotations

from dataclasses import dataclass

from service.store.database import Database

# Served by ix_events_user_recent (user_id, ts, ...), newest first.
_RECENT_EVENTS = "SELECT event_id, item_id, type, ts, value FROM events WHERE user_id = ? ORDER BY ts DESC LIMIT ?"
# exposures has no index on user_id alone; starting from the few experiments makes each
# lookup a primary-key probe (experiment_key, user_id) instead of a scan of every exposure.
_USER_EXPOSURES = (
    "SELECT e.key, e.status, x.arm, x.probability, x.exposed_at FROM experiments e "
    "JOIN exposures x ON x.experiment_key = e.key AND x.user_id = ? ORDER BY x.exposed_at DESC, e.key"
)


@dataclass(frozen=True)
class UserEvent:
    """One behaviour event of a user."""

    event_id: str
    item_id: str
    type: str
    ts: float
    value: float | None


@dataclass(frozen=True)
class UserExposure:
    """A user's arm in one experiment, with the experiment's status."""

    experiment: str
    status: str
    arm: str
    probability: float
    exposed_at: float


def recent_events(db: Database, user_id: str, limit: int) -> list[UserEvent]:
    """A user's newest `limit` events, newest first."""
    rows = db.fetch(_RECENT_EVENTS, (user_id, limit))
    return [UserEvent(str(r[0]), str(r[1]), str(r[2]), float(r[3]), None if r[4] is None else float(r[4])) for r in rows]


def user_exposures(db: Database, user_id: str) -> list[UserExposure]:
    """Every experiment the user was exposed to, newest exposure first."""
    rows = db.fetch(_USER_EXPOSURES, (user_id,))
    return [UserExposure(str(r[0]), str(r[1]), str(r[2]), float(r[3]), float(r[4])) for r in rows]
