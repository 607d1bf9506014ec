"""Epoch seconds to the contract's ISO 8601, and the window of timestamps the service accepts."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from functools import lru_cache

# 2000-01-01T00:00:00Z: nothing a storefront reports is older, and every day
# number, exposure age and retention window stays a small, exact float.
EARLIEST = 946_684_800.0
# How far ahead a timestamp may lie: 100 calendar years.
HORIZON_YEARS = 100
_DAY = 86_400


@lru_cache(maxsize=4)
def _horizon_seconds(day: int) -> float:
    """Seconds from a moment of this UTC day to the same moment 100 calendar years on (29 February to the 28th)."""
    start = datetime.fromtimestamp(day * _DAY, timezone.utc)
    try:
        ahead = start.replace(year=start.year + HORIZON_YEARS)
    except ValueError:
        ahead = start.replace(year=start.year + HORIZON_YEARS, day=28)
    return ahead.timestamp() - start.timestamp()


def server_time() -> float:
    """The server's clock to the microsecond, the precision of the timestamps the service answers.

    A time the server picks (an exposure, an action sent without one) is stored as this, so that
    the same time sent back, as parsed from its ISO text, is the same float and not up to half a
    microsecond earlier: a weekly bonus due exactly a week after `exposed_at` is then due.
    """
    return ((time.time_ns() + 500) // 1000) / 1_000_000  # an int division, rounded as parsing rounds


def latest(now: float | None = None) -> float:
    """The latest accepted timestamp: 100 calendar years after `now` (the server's clock)."""
    now = time.time() if now is None else now
    return now + _horizon_seconds(int(now // _DAY))


def window_error(epoch: float, now: float | None = None) -> str | None:
    """Why a timestamp falls outside the accepted window, or None when it is inside."""
    if epoch < EARLIEST:
        return "must be at or after 2000-01-01T00:00:00Z"
    if epoch > latest(now):
        return "must be at most 100 years after the server's current time"
    return None


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC timestamp."""
    if epoch is None:
        return None
    text = datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
    return text.rstrip("0").rstrip(".") + "Z" if "." in text else text + "Z"
