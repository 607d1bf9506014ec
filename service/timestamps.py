"""Epoch seconds to the contract's ISO 8601, and the window of timestamps the service accepts."""
from __future__ import annotations

import time
from datetime import datetime, timezone

# 2000-01-01T00:00:00Z: nothing a storefront reports is older, and every day
# number, exposure age and retention window stays a small, exact float.
EARLIEST = 946_684_800.0
# How far ahead a timestamp may lie (100 years of 365.25 days).
HORIZON_SECONDS = 100 * 365.25 * 86_400


def latest(now: float | None = None) -> float:
    """The latest accepted timestamp: 100 years after `now` (the server's clock)."""
    return (time.time() if now is None else now) + HORIZON_SECONDS


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
