"""Users drifting away: the most valuable customers who have gone quiet."""
from __future__ import annotations

import time
from typing import Any

from service.errors import Invalid
from service.store import user_activity
from service.store.database import Database
from service.timestamps import iso

DAY = 86_400.0


def at_risk(db: Database, idle_days: float, min_purchases: int, limit: int, cursor: str | None, now: float | None = None) -> dict[str, Any]:
    """Users idle for at least `idle_days` with at least `min_purchases`, highest revenue first, then most purchases, a page at a time."""
    now = time.time() if now is None else now
    after = None
    if cursor is not None:
        after = user_activity.decode_cursor(cursor)
        if after is None:
            raise Invalid.field("query.cursor", "is not a cursor this service gave out; pass next_cursor from the previous page")
    page = user_activity.at_risk(db, now - idle_days * DAY, min_purchases, limit + 1, after)
    more = len(page) > limit
    page = page[:limit]
    return {
        "users": [
            {"user_id": a.user_id, "last_seen": iso(a.last_seen), "idle_days": (now - a.last_seen) / DAY, "purchases": a.purchases, "revenue": a.revenue}
            for a in page
        ],
        "next_cursor": user_activity.encode_cursor(page[-1]) if more and page else None,
    }
