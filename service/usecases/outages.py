"""Writes a long run keeps making through a short database outage, rather than losing hours of work to it."""
from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from service.errors import HostCannot, Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


def through_outage(what: str, write: Callable[[], T], seconds: float) -> T:
    """`write`, tried again while the database is unavailable, for up to `seconds` in all; each write must be
    safe to repeat, since one whose answer was lost may have been stored. What an operator must mend is not retried."""
    deadline, pause = time.monotonic() + seconds, 0.5
    while True:
        try:
            return write()
        except HostCannot:
            raise
        except Unavailable as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("database unavailable; trying the write again", extra={"write": what, "seconds": pause, "error": exc.message})
            time.sleep(pause)
            pause = min(pause * 2, 10.0)
