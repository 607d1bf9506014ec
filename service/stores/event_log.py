"""The training log: every accepted event batch again, as one compact columnar segment.

Fetching millions of events row by row costs more than fitting a model to
them (5M rows take about 6 s to fetch from SQLite before any work is done).
So each accepted batch is also written, in the transaction that stores its
events, as one segment row: users and items as integer codes from
`user_codes` and `item_codes`, event types as bytes and timestamps, each a
packed little-endian array. Training reads a few hundred segments instead of
millions of rows. The `events` table stays the record that serving reads.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sqlalchemy.orm import Session

from recommender.matrix import EVENT_TYPES, CodedEvents
from service.db import Database
from service.stores.sql import chunks, run

_TYPE_CODES = {t: k for k, t in enumerate(EVENT_TYPES)}
_CODE_TABLES = {"users": ("user_codes", "user_id"), "items": ("item_codes", "item_id")}
# Each chunk's parameters stay under SQLite's limit of 32,766 per statement.
_CHUNK = 1000


def _codes(session: Session, kind: str, ids: set[str]) -> dict[str, int]:
    """The code of every id, giving new ids a code; concurrent writers agree through the unique index."""
    table, column = _CODE_TABLES[kind]
    ordered = sorted(ids)  # one lock order, so concurrent PostgreSQL batches cannot deadlock
    found: dict[str, int] = {}
    for chunk in chunks(ordered, _CHUNK):
        marks = ", ".join(["(?)"] * len(chunk))
        run(session, f"INSERT INTO {table} ({column}) VALUES {marks} ON CONFLICT ({column}) DO NOTHING", chunk)
        marks = ", ".join(["?"] * len(chunk))
        found.update(run(session, f"SELECT {column}, code FROM {table} WHERE {column} IN ({marks})", chunk))
    return found


def pack(users: np.ndarray, items: np.ndarray, types: np.ndarray, ts: np.ndarray) -> bytes:
    """One segment's bytes: users and items as int64, types as uint8, timestamps as float64."""
    return b"".join(
        (users.astype("<i8").tobytes(), items.astype("<i8").tobytes(), types.astype("u1").tobytes(), ts.astype("<f8").tobytes())
    )


def unpack(data: bytes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays that `pack` wrote for `n` events."""
    users = np.frombuffer(data, dtype="<i8", count=n)
    items = np.frombuffer(data, dtype="<i8", count=n, offset=8 * n)
    types = np.frombuffer(data, dtype="u1", count=n, offset=16 * n)
    ts = np.frombuffer(data, dtype="<f8", count=n, offset=17 * n)
    return users, items, types, ts


def append(session: Session, events: Sequence[tuple[int, str, str, str, float]]) -> None:
    """Write accepted events, as (row id, user, item, type, ts), as one segment in the caller's transaction."""
    if not events:
        return
    users = _codes(session, "users", {e[1] for e in events})
    items = _codes(session, "items", {e[2] for e in events})
    data = pack(
        np.fromiter((users[e[1]] for e in events), dtype=np.int64, count=len(events)),
        np.fromiter((items[e[2]] for e in events), dtype=np.int64, count=len(events)),
        np.fromiter((_TYPE_CODES[e[3]] for e in events), dtype=np.uint8, count=len(events)),
        np.fromiter((e[4] for e in events), dtype=np.float64, count=len(events)),
    )
    run(session, "INSERT INTO event_segments (last_event_id, events, data) VALUES (?, ?, ?)", [max(e[0] for e in events), len(events), data])


def _names(session: Session, kind: str) -> np.ndarray:
    """An array with each code's id at the code's position (None in the gaps)."""
    table, column = _CODE_TABLES[kind]
    rows = run(session, f"SELECT code, {column} FROM {table}", [])
    names = np.full(max((r[0] for r in rows), default=-1) + 1, None, dtype=object)
    if rows:
        codes, ids = zip(*rows)
        names[np.array(codes, dtype=np.int64)] = ids
    return names


def read(db: Database) -> tuple[CodedEvents, int]:
    """Every event in the log, from one consistent snapshot, and the newest event row id it covers."""
    with db.read() as session:
        rows = run(session, "SELECT events, data, last_event_id FROM event_segments ORDER BY id", [])
        users, items, types, ts = (list(column) for column in zip(*(unpack(bytes(data), n) for n, data, _ in rows))) if rows else ([], [], [], [])
        events = CodedEvents(
            users=np.concatenate(users) if users else np.zeros(0, dtype=np.int64),
            items=np.concatenate(items) if items else np.zeros(0, dtype=np.int64),
            types=np.concatenate(types) if types else np.zeros(0, dtype=np.uint8),
            ts=np.concatenate(ts) if ts else np.zeros(0),
            user_ids=_names(session, "users"),
            item_ids=_names(session, "items"),
        )
    return events, max((r[2] for r in rows), default=0)
