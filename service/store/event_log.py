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

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sqlalchemy.orm import Session

from recommender.matrix import EVENT_TYPES, CodedEvents
from service.errors import HostCannot
from service.store.database import Database
from service.store.sql import chunks, run

_TYPE_CODES = {t: k for k, t in enumerate(EVENT_TYPES)}
_CODE_TABLES = {"users": ("user_codes", "user_id"), "items": ("item_codes", "item_id")}
# Each chunk's parameters stay under SQLite's limit of 32,766 per statement.
_CHUNK = 1000
# Below this mean size per segment, training merges the segments it read ...
COMPACT_BELOW = 1000
# ... into segments of at most this many events (17 MB each).
SEGMENT_MAX = 1_000_000


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


EVENT_BYTES = 8 + 8 + 1 + 8  # user and item codes, type, time: what `pack` writes per event


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
    append_coded(
        session,
        max(e[0] for e in events),
        np.fromiter((users[e[1]] for e in events), dtype=np.int64, count=len(events)),
        np.fromiter((items[e[2]] for e in events), dtype=np.int64, count=len(events)),
        type_codes([e[3] for e in events]),
        np.fromiter((e[4] for e in events), dtype=np.float64, count=len(events)),
    )


def type_codes(types: Sequence[str]) -> np.ndarray:
    """Each event type as its position in EVENT_TYPES."""
    return np.fromiter((_TYPE_CODES[t] for t in types), dtype=np.uint8, count=len(types))


def append_coded(session: Session, last_event_id: int, users: np.ndarray, items: np.ndarray, types: np.ndarray, ts: np.ndarray) -> None:
    """Write events already turned into codes as one segment, in the caller's transaction."""
    if len(users):
        run(session, "INSERT INTO event_segments (last_event_id, events, data) VALUES (?, ?, ?)", [int(last_event_id), len(users), pack(users, items, types, ts)])


def _names(session: Session, kind: str) -> np.ndarray:
    """An array with each code's id at the code's position (None in the gaps)."""
    table, column = _CODE_TABLES[kind]
    rows = run(session, f"SELECT code, {column} FROM {table}", [])
    names = np.full(max((r[0] for r in rows), default=-1) + 1, None, dtype=object)
    if rows:
        codes, ids = zip(*rows)
        names[np.array(codes, dtype=np.int64)] = ids
    return names


@dataclass(frozen=True)
class LogSnapshot:
    """Everything in the log at one moment, and which segments it came from."""

    events: CodedEvents
    last_event_id: int
    segment_ids: list[int]

    @property
    def fragmented(self) -> bool:
        """Whether segments are so small on average that reading them costs more than their events."""
        return len(self.segment_ids) > 1 and len(self.events) / len(self.segment_ids) < COMPACT_BELOW


def read(db: Database) -> LogSnapshot:
    """Every event in the log, from one consistent snapshot."""
    with db.read() as session:
        rows = run(session, "SELECT id, events, data, last_event_id FROM event_segments ORDER BY id", [])
        columns = [unpack(_whole(segment, bytes(data), n), n) for segment, n, data, _ in rows]
        events = CodedEvents(
            users=_concat([c[0] for c in columns], np.int64),
            items=_concat([c[1] for c in columns], np.int64),
            types=_concat([c[2] for c in columns], np.uint8),
            ts=_concat([c[3] for c in columns], np.float64),
            user_ids=_names(session, "users"),
            item_ids=_names(session, "items"),
        )
    return LogSnapshot(events, max((int(r[3]) for r in rows), default=0), [int(r[0]) for r in rows])


def _whole(segment: int, data: bytes, n: int) -> bytes:
    """A segment's bytes, when they are as many as its events need (see `pack`); otherwise no run could train."""
    if len(data) != EVENT_BYTES * n:
        raise HostCannot(
            f"training-log segment {segment} holds {len(data):,} bytes where its {n:,} events need {EVENT_BYTES * n:,}: "
            "the log is damaged; restore the database from a backup"
        )
    return data


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


class _Overtaken(Exception):
    """Another run compacted some of the snapshot's segments first."""


def compact(db: Database, snapshot: LogSnapshot) -> int:
    """Replace the snapshot's segments by as few as possible; answer how many it replaced (0 if it was overtaken).

    Storefronts that send one event per request leave one segment per event,
    which would make the log slower to read than the rows it copies. Training
    calls this when the log is fragmented. It deletes exactly the segments it
    read (not an id range: on PostgreSQL a lower id can commit later), so an
    event accepted meanwhile is never lost; a concurrent reader sees the log
    before or after, never half.

    Two runs may read the same segments and both try. The second one's DELETE
    waits for the first to commit (PostgreSQL's row locks, SQLite's write
    lock) and then finds some of its segments gone; writing its merged copy
    would log those events twice, so it rolls back and leaves the log as the
    first one left it. Its snapshot is still right for its own training.
    """
    e = snapshot.events
    try:
        with db.write() as session:
            deleted = 0
            for ids in chunks(snapshot.segment_ids, _CHUNK):
                deleted += len(run(session, f"DELETE FROM event_segments WHERE id IN ({', '.join(['?'] * len(ids))}) RETURNING id", ids))
            if deleted != len(snapshot.segment_ids):
                raise _Overtaken
            for start in range(0, len(e), SEGMENT_MAX):
                stop = min(start + SEGMENT_MAX, len(e))
                data = pack(e.users[start:stop], e.items[start:stop], e.types[start:stop], e.ts[start:stop])
                run(session, "INSERT INTO event_segments (last_event_id, events, data) VALUES (?, ?, ?)", [snapshot.last_event_id, stop - start, data])
    except _Overtaken:
        return 0
    return len(snapshot.segment_ids)
