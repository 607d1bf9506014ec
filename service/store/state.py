"""The shared state every worker reads per request (active model, catalogue revision) and a user's recent events.

Rows carry a tag in front (0 state, 1 recent events, 2 purchased items) so that one
round trip returns them all: on the hot path the round trip costs more than any read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from recommender.index import UserEvent
from service.store.database import Database
from service.store.sql import insert, set_state
from service.store.tables import AppStateRow

ACTIVE_MODEL_KEY = "active_model"
CATALOGUE_KEY = "catalogue"
USER_EVENTS_LIMIT = 5000

_STATE = "SELECT 0, key, value, revision FROM app_state WHERE key IN (?, ?)"
_RECENT = "SELECT * FROM (SELECT 1, item_id, type, ts FROM events WHERE user_id = ? ORDER BY ts DESC LIMIT ?) AS recent"
# Every item the user ever bought, however many events came since: none may be recommended.
# The type as a constant, so that the partial index of purchases answers without visiting the table.
_PURCHASED = "SELECT DISTINCT 2, item_id, 'purchase', 0.0 FROM events WHERE user_id = ? AND type = 'purchase'"
_PURCHASES = _STATE + " UNION ALL " + _PURCHASED
_ALL_EVENTS = _STATE + " UNION ALL " + _RECENT + " UNION ALL " + _PURCHASED


@dataclass(frozen=True)
class SharedState:
    """What every worker must agree on, read once per request."""

    active_version: str | None
    catalogue_revision: int
    # A view of the catalogue at this revision or later may be brought up to `catalogue_revision` by
    # reading only the items stamped since; None: read it whole (see `catalogue_stamps`).
    catalogue_patchable_from: int | None = None


def catalogue_stamps(value: str, revision: int) -> int | None:
    """From the catalogue row's value, "STAMPED:FLOOR", the oldest revision a view may be patched from.

    A writer that stamps the items it changes with the new revision (`upsert_items`) records that
    revision and carries the floor. A writer of an older version of the service moves the revision
    without stamping or recording anything: the value then names an older revision, and no view
    may be patched across that move.
    """
    stamped, _, floor = value.partition(":")
    if stamped.isdigit() and floor.isdigit() and int(stamped) == revision:
        return int(floor)
    return None


def _state(rows: list[tuple[Any, ...]]) -> SharedState:
    state = {r[1]: (r[2], r[3]) for r in rows if r[0] == 0}
    active = state.get(ACTIVE_MODEL_KEY, ("", 0))[0] or None
    value, revision = state.get(CATALOGUE_KEY, ("", 0))
    return SharedState(active, int(revision), catalogue_stamps(value or "", int(revision)))


def shared_state(db: Database) -> SharedState:
    """The active model version and the catalogue revision, in one query."""
    return _state(db.fetch(_STATE, (ACTIVE_MODEL_KEY, CATALOGUE_KEY)))


def state_and_user_events(db: Database, user_id: str, purchases_only: bool = False) -> tuple[SharedState, list[UserEvent], set[str]]:
    """The shared state, the user's most recent events as (item_id, type, ts), newest first (none when
    `purchases_only`), and every item the user has purchased."""
    if purchases_only:
        rows = db.fetch(_PURCHASES, (ACTIVE_MODEL_KEY, CATALOGUE_KEY, user_id))
    else:
        rows = db.fetch(_ALL_EVENTS, (ACTIVE_MODEL_KEY, CATALOGUE_KEY, user_id, USER_EVENTS_LIMIT, user_id))
    events = [(r[1], r[2], float(r[3])) for r in rows if r[0] == 1]
    return _state(rows), events, {r[1] for r in rows if r[0] == 2}


def set_active_model(session: Session, version: str) -> None:
    """Make `version` the one every worker serves, in the caller's transaction."""
    set_state(session, ACTIVE_MODEL_KEY, version)


def active_model(session: Session) -> str | None:
    """The version every worker serves, read in the caller's transaction."""
    row = session.get(AppStateRow, ACTIVE_MODEL_KEY)
    return row.value or None if row is not None else None


def active_model_revision(session: Session) -> int:
    """How many activations there have been (0 before the first): what `replace_active_model` compares."""
    row = session.get(AppStateRow, ACTIVE_MODEL_KEY)
    return int(row.revision) if row is not None else 0


def replace_active_model(session: Session, version: str, over_revision: int) -> bool:
    """Make `version` the one every worker serves if no activation came after `over_revision`; whether it did.

    One conditional statement, so that an activation committed meanwhile by another worker or
    host is seen (PostgreSQL re-checks the row it waited for) and wins.
    """
    # RETURNING, not a row count: psycopg reports -1 for an INSERT ... ON CONFLICT built this way.
    if over_revision == 0:
        stmt = insert(session, AppStateRow).values(key=ACTIVE_MODEL_KEY, value=version, revision=1).on_conflict_do_nothing()
        return session.execute(stmt.returning(AppStateRow.key)).first() is not None
    moved = (
        update(AppStateRow)
        .where(AppStateRow.key == ACTIVE_MODEL_KEY, AppStateRow.revision == over_revision)
        .values(value=version, revision=AppStateRow.revision + 1)
        .returning(AppStateRow.key)
    )
    return session.execute(moved).first() is not None


def setting(db: Database, key: str) -> str | None:
    """A shared setting's value, or None when it was never set."""
    rows = db.fetch("SELECT value FROM app_state WHERE key = ?", (key,))
    return str(rows[0][0]) if rows else None


def put_setting(db: Database, key: str, value: str) -> None:
    """Set a shared setting."""
    with db.write() as session:
        set_state(session, key, value)
