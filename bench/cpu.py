"""Where a load run's CPU went: the gunicorn processes, PostgreSQL's, and everything else (the clients).

On a small machine every benchmarked process shares the same cores, so a path's ratio to
/healthz is, to a first approximation, the ratio of CPU each request costs all of them.
This reads the counters Linux keeps per process (/proc/PID/stat) and for the machine
(/proc/stat) before and after a run and divides by the requests served. Elsewhere than
Linux it reports nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSplit:
    """Microseconds of CPU per request, by who spent them."""

    workers: float
    database: float
    others: float

    @property
    def total(self) -> float:
        """All of it."""
        return self.workers + self.database + self.others

    def __str__(self) -> str:
        return f"CPU per request: {self.total:,.0f} µs (gunicorn {self.workers:,.0f}, PostgreSQL {self.database:,.0f}, clients and the rest {self.others:,.0f})"


def _ticks(pid: int | str) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0  # gone since it was listed
    return int(fields[11]) + int(fields[12])  # user and system time


def _postgres_ticks() -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += _ticks(entry.name)
            except OSError:
                continue
    return total


def _busy_ticks() -> int:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4]  # all but idle and iowait


def measured(server_pids: Iterable[int], load: Callable[[], T], requests: Callable[[T], int]) -> tuple[T, CpuSplit | None]:
    """Run `load` and answer its result with the CPU each of its `requests` cost, or None where /proc is missing."""
    if not Path("/proc/stat").exists():
        return load(), None
    pids = list(server_pids)
    before = (sum(_ticks(p) for p in pids), _postgres_ticks(), _busy_ticks())
    result = load()
    after = (sum(_ticks(p) for p in pids), _postgres_ticks(), _busy_ticks())
    served = max(1, requests(result))
    workers, database, busy = ((a - b) * 1e6 / _TICKS / served for a, b in zip(after, before))
    return result, CpuSplit(workers, database, max(0.0, busy - workers - database))


def split_line(name: str, base: str, pids: Iterable[int], paths: list[str], headers: dict[str, str], clients: int, seconds: float) -> str:
    """One more load run of `paths`, reported as the CPU each request cost (empty where /proc is missing)."""
    from bench.load import run

    _, split = measured(pids, lambda: run(base, paths, headers, clients=clients, seconds=seconds), lambda r: r.requests)
    return f"{name:<28} {split}" if split else ""
