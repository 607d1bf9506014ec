"""Behaviour events: idempotent batch ingestion (serving reads them through service.store.state, training through service.store.event_log, targeting through service.store.user_activity)."""
from __future__ import annotations

import time
from typing import Any, Sequence

from service.store.database import Database
from service.store import event_log, user_activity
from service.store.sql import chunks, run

_CHUNK = 1000  # rows per statement: 7,000 parameters, under SQLite's 32,766
_INSERT_EVENTS = (
    "INSERT INTO events (event_id, user_id, item_id, type, ts, value, received_at) VALUES {rows} "
    "ON CONFLICT (event_id) DO NOTHING RETURNING id, user_id, item_id, type, ts, value"
)
_EVENT_ROW = "(?, ?, ?, ?, ?, ?, ?)"


def insert_events(db: Database, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Store a batch in one transaction; answer (accepted, duplicates).

    A replayed `event_id`, in this batch or an earlier one, is counted as a
    duplicate and stored once. ON CONFLICT DO NOTHING ... RETURNING says
    exactly which rows this batch wrote, also when two clients send the same
    events at the same time; those rows, and only those, go to the training log.
    """
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    now = time.time()
    # One lock order on the event_id index, so that two batches overlapping in a
    # different order cannot deadlock on PostgreSQL.
    rows = sorted(unique.values(), key=lambda e: e["event_id"])
    accepted: list[tuple[int, str, str, str, float, float | None]] = []
    with db.write() as session:
        for chunk in chunks(rows, _CHUNK):
            params = [x for e in chunk for x in (e["event_id"], e["user_id"], e["item_id"], e["type"], e["ts"], e.get("value"), now)]
            accepted.extend(run(session, _INSERT_EVENTS.format(rows=", ".join([_EVENT_ROW] * len(chunk))), params))
        event_log.append(session, [e[:5] for e in accepted])
        user_activity.record(session, accepted)
    return len(accepted), len(events) - len(accepted)
