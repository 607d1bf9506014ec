"""The folder where gunicorn's workers keep their Prometheus counts: its lock, and folding a dead worker's files.

Kept apart from the rest of the HTTP layer because gunicorn's master runs it, and needs no Flask.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client.mmap_dict import MmapedDict

# The kinds of metric this service keeps (no gauges), each summed over the workers that wrote it.
_ADDITIVE_KINDS = ("counter", "histogram")
# Not a .db file, so that the collector, which reads every one, leaves it alone.
_LOCK_NAME = "folding.lock"
# How long a fold waits for scrapes to finish before leaving the files for later: the master
# must not stall behind a worker stuck in a scrape.
FOLD_WAIT_SECONDS = 1.0


@contextmanager
def scrape_lock(folder: str) -> Iterator[None]:
    """Held while a scrape reads the folder: a fold waits for it, so that a scrape never reads the totals
    before a fold and the dead worker's file after it was gone (a failure, or its counts twice)."""
    fd = _lock_file(folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def fold_dead_worker(pid: int, folder: str) -> bool:
    """Add a dead worker's counts to the folder's totals of dead workers and remove its files; whether it did.

    Each worker keeps its counts in files of its own, which outlive it so that totals never go
    back; recycled workers (GUNICORN_MAX_REQUESTS) left a pair each, read again by every scrape.
    Folded, the folder holds the live workers' files and one more of each kind. The new totals are
    written beside the old and renamed over them before the dead files go, so a failure part way
    leaves every count where it was. False, with nothing changed, when scrapes held the folder for
    longer than FOLD_WAIT_SECONDS: the files stay, counted as before.
    """
    fd = _lock_file(folder)
    try:
        deadline = time.monotonic() + FOLD_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
        for kind in _ADDITIVE_KINDS:
            dead = os.path.join(folder, f"{kind}_{pid}.db")
            if os.path.exists(dead):
                _add_into(os.path.join(folder, f"{kind}_dead.db"), dead)  # the collector takes the kind from the name's first part
                os.remove(dead)
        return True
    finally:
        os.close(fd)


def _add_into(totals_path: str, dead: str) -> None:
    sums: dict[str, float] = {}
    for path in (totals_path, dead):
        if os.path.exists(path):
            for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(path):
                sums[key] = sums.get(key, 0.0) + value
    fresh = totals_path + ".new"  # not a .db name: no scrape reads it half written
    if os.path.exists(fresh):
        os.remove(fresh)
    written = MmapedDict(fresh)
    try:
        for key, value in sums.items():
            written.write_value(key, value, 0.0)
    finally:
        written.close()
    os.replace(fresh, totals_path)


def _lock_file(folder: str) -> int:
    # Read-only is enough for flock, and works in a folder another user's run left its lock in.
    return os.open(os.path.join(folder, _LOCK_NAME), os.O_RDONLY | os.O_CREAT, 0o644)
