"""Each user's behaviour so far (first and last event, purchases, revenue), kept up to date as events arrive.

Targeting on behaviour and the at-risk list read one row per user here instead
of aggregating the user's events on every request. The upsert adds a batch's
counts atomically, so concurrent batches for the same user never lose one.
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy.orm import Session

from service.store.database import Database
from service.store.sql import ROUNDING_ERROR, chunks, exact_sum, run
from service.text import encodable

_CHUNK = 1000  # 6 parameters a row, well under SQLite's 32,766 a statement


def _renormalised(batch: str) -> tuple[str, str]:
    """SQL for the new (revenue, revenue_low) of a stored row plus the pair in the row named `batch`.

    Revenue is two doubles kept normalised: `revenue` the total correctly rounded (what every reader and
    the at-risk index read), `revenue_low` what it rounded away. Stored plus batch: s = H + h and its exact
    error, t = L + l + that error, then the new pair is s + t and what that sum rounds away. Plain addition
    had turned 0.01, 1e12 and -1e12 into 0.010009765625.
    """
    total = f"(user_activity.revenue + {batch}.revenue)"
    rest = f"((user_activity.revenue_low + {batch}.revenue_low) + {ROUNDING_ERROR.format(a='user_activity.revenue', b=f'{batch}.revenue')})"
    return f"{total} + {rest}", ROUNDING_ERROR.format(a=total, b=rest)


_REVENUE, _REVENUE_LOW = _renormalised("excluded")
# What an upsert sets on a user seen before; `events` adds PostgreSQL's batches with it too.
ADD_TO_STORED = (
    "ON CONFLICT (user_id) DO UPDATE SET "
    "first_seen = CASE WHEN excluded.first_seen < user_activity.first_seen THEN excluded.first_seen ELSE user_activity.first_seen END, "
    "last_seen = CASE WHEN excluded.last_seen > user_activity.last_seen THEN excluded.last_seen ELSE user_activity.last_seen END, "
    f"purchases = user_activity.purchases + excluded.purchases, revenue = {_REVENUE}, revenue_low = {_REVENUE_LOW}"
)
_UPSERT = "INSERT INTO user_activity (user_id, first_seen, last_seen, purchases, revenue, revenue_low) VALUES {rows} " + ADD_TO_STORED
_ONE = "SELECT first_seen, last_seen, purchases, revenue FROM user_activity WHERE user_id = ?"
# Seen as `record` counts an event: at its time, or when it arrived if that was earlier.
_SEEN_BEFORE = "(SELECT CASE WHEN ts < received_at THEN ts ELSE received_at END AS seen, type, value FROM events WHERE user_id = ?) e WHERE seen < ?"
_AS_OF = f"SELECT MIN(seen), MAX(seen), SUM(CASE WHEN type = 'purchase' AND (value IS NULL OR value >= 0) THEN 1 ELSE 0 END) FROM {_SEEN_BEFORE}"
# The values, summed in Python as `record` sums them: neither database adds doubles exactly.
_VALUES_AS_OF = f"SELECT value FROM {_SEEN_BEFORE} AND type = 'purchase' AND value <> 0"
_AT_RISK = (
    "SELECT user_id, last_seen, purchases, revenue FROM user_activity "
    "WHERE last_seen <= ? AND purchases >= ? {after} ORDER BY revenue DESC, purchases DESC, user_id LIMIT ?"
)
_AFTER = "AND (revenue < ? OR (revenue = ? AND (purchases < ? OR (purchases = ? AND user_id > ?))))"


@dataclass(frozen=True)
class Activity:
    """What a user has done so far."""

    user_id: str
    first_seen: float
    last_seen: float
    purchases: int
    revenue: float


def record(session: Session, accepted: Sequence[tuple[Any, ...]], received_at: float) -> None:
    """Add accepted events, as (id, user, item, type, ts, value), to their users' activity in the caller's transaction.

    An event dated ahead of `received_at` counts as seen when it arrived: a user cannot have been seen
    later than that, and one such date (a clock years off) would otherwise keep them off the at-risk
    list for good.
    """
    per_user: dict[str, list[Any]] = {}
    for _, user, _, kind, when, value in accepted:
        ts = min(when, received_at)
        entry = per_user.setdefault(user, [ts, ts, 0, []])
        entry[0], entry[1] = min(entry[0], ts), max(entry[1], ts)
        if kind == "purchase":
            entry[2] += value is None or value >= 0  # a negative purchase is a return: it nets off revenue, and buys nothing
            if value:
                entry[3].append(value)
    rows = sorted(per_user.items())  # one lock order, so that concurrent batches cannot deadlock on PostgreSQL
    for chunk in chunks(rows, _CHUNK):
        params = [x for user, (first, last, purchases, values) in chunk for x in (user, first, last, purchases, *exact_sum(values))]
        run(session, _UPSERT.format(rows=", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))), params)


_ADD_REVENUE = "UPDATE user_activity SET revenue = {revenue}, revenue_low = {low} FROM (VALUES {rows}) AS batch (user_id, revenue, revenue_low) WHERE user_activity.user_id = batch.user_id"


def add_revenue(session: Session, values: Sequence[tuple[str, Sequence[float]]]) -> None:
    """Add each user's purchase values, summed exactly, to their stored revenue; their rows exist already. In user order."""
    revenue, low = _renormalised("batch")
    for chunk in chunks(sorted(values, key=lambda row: row[0]), _CHUNK):
        params = [x for user, vs in chunk for x in (user, *exact_sum(list(vs)))]
        run(session, _ADD_REVENUE.format(revenue=revenue, low=low, rows=", ".join(["(?, ?, ?)"] * len(chunk))), params)


def of_user(db: Database, user_id: str) -> Activity | None:
    """One user's activity, or None for a user without events."""
    rows = db.fetch(_ONE, (user_id,))
    return Activity(user_id, float(rows[0][0]), float(rows[0][1]), int(rows[0][2]), float(rows[0][3])) if rows else None


def as_of(db: Database, user_id: str, moment: float) -> Activity | None:
    """One user's activity from their events before `moment` alone, or None if they had none by then.

    Reads every event of the user, so only for a moment the user has been seen since (an exposure logged late).
    """
    rows = db.fetch(_AS_OF, (user_id, moment))
    if not rows or rows[0][0] is None:
        return None
    first, last, purchases = rows[0]
    revenue = exact_sum([float(v) for (v,) in db.fetch(_VALUES_AS_OF, (user_id, moment))])[0]
    return Activity(user_id, float(first), float(last), int(purchases), revenue)


def encode_cursor(activity: Activity) -> str:
    """An opaque cursor that resumes the at-risk list after this user."""
    # The id as its raw UTF-8 after a line of JSON numbers, not inside the JSON: JSON writes a control
    # character as six (\u0001), and 128 of them had made a cursor longer than the 1,024 characters a
    # cursor may have. At most 512 bytes of id and some 50 of numbers come to under 760 characters.
    raw = json.dumps([activity.revenue, activity.purchases], separators=(",", ":")).encode() + b"\n" + activity.user_id.encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_MAX_ID = 128  # the user_id column's length


def decode_cursor(cursor: str) -> tuple[float, int, str] | None:
    """The position a cursor resumes after; None when it is not one this service wrote."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        numbers, newline, name = raw.partition(b"\n")
        # A cursor written before 2026-12-06 is one JSON array, the id in it (JSON never writes a raw newline).
        revenue, purchases, user_id = [*json.loads(numbers), name.decode()] if newline else json.loads(raw)
        # What a stored row can hold, and nothing else: the values go to the database as they are.
        if (
            isinstance(revenue, (int, float)) and not isinstance(revenue, bool) and math.isfinite(revenue)
            and isinstance(purchases, int) and not isinstance(purchases, bool) and 0 <= purchases < 2**63
            and isinstance(user_id, str) and len(user_id) <= _MAX_ID and "\x00" not in user_id and encodable(user_id)
        ):
            return float(revenue), purchases, user_id
    except (ValueError, TypeError, OverflowError):
        pass
    return None


def at_risk(db: Database, idle_since: float, min_purchases: int, limit: int, after: tuple[float, int, str] | None) -> list[Activity]:
    """Users idle since `idle_since` with at least `min_purchases`, most valuable first (revenue, purchases, then id)."""
    params: list[Any] = [idle_since, min_purchases]
    if after is not None:
        revenue, purchases, user_id = after
        params += [revenue, revenue, purchases, purchases, user_id]
    rows = db.fetch(_AT_RISK.format(after=_AFTER if after is not None else ""), (*params, limit))
    return [Activity(r[0], 0.0, float(r[1]), int(r[2]), float(r[3])) for r in rows]
