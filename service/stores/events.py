"""Behaviour events: idempotent batch ingestion and the reads that serving and training need."""
from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

from sqlalchemy import func, select

from service.db import Database
from service.models import Event

TRAINING_CHUNK = 200_000
_INSERT_EVENT = (
    "INSERT INTO events (event_id, user_id, item_id, type, ts, value, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)


def insert_events(db: Database, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Store a batch in one transaction; answer (accepted, duplicates).

    A replayed `event_id`, in this batch or an earlier one, is counted as a
    duplicate and stored once. ON CONFLICT DO NOTHING keeps the counts exact
    when two clients send the same events at the same time.
    """
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    now = time.time()
    rows = [(e["event_id"], e["user_id"], e["item_id"], e["type"], e["ts"], e.get("value"), now) for e in unique.values()]
    accepted = db.insert_many(_INSERT_EVENT, rows)
    return accepted, len(events) - accepted


def user_events(db: Database, user_id: str, limit: int = 5000) -> list[tuple[str, str, float]]:
    """The user's most recent events as (item_id, type, ts), newest first."""
    rows = db.fetch("SELECT item_id, type, ts FROM events WHERE user_id = ? ORDER BY ts DESC LIMIT ?", (user_id, limit))
    return [(r[0], r[1], r[2]) for r in rows]


def max_event_id(db: Database) -> int:
    """The newest stored event's row id (0 when there are none)."""
    with db.read() as session:
        return int(session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)


def iter_event_chunks(db: Database, up_to_id: int, chunk: int = TRAINING_CHUNK) -> Iterator[tuple[list[str], list[str], list[str], list[float]]]:
    """Every event up to a row id, in keyset-paginated chunks of parallel lists."""
    last = 0
    while last < up_to_id:
        rows = db.fetch(
            "SELECT id, user_id, item_id, type, ts FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (last, up_to_id, chunk),
        )
        if not rows:
            return
        last = rows[-1][0]
        _ids, users, items, types, ts = zip(*rows)
        yield list(users), list(items), list(types), list(ts)
