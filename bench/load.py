"""A small closed-loop HTTP load generator: N client processes with keep-alive connections."""
from __future__ import annotations

import http.client
import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Callable
from urllib.parse import urlparse

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    """Throughput and latency of one load run."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


def _client(
    base: str, paths: list[str], headers: dict[str, str], seconds: float, once: bool, ready: "Barrier", out: "mp.Queue[tuple[list[float], int, float, float]]"
) -> None:
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    latencies: list[float] = []
    errors = 0
    ready.wait()
    began = time.perf_counter()
    deadline = began + seconds
    i = 0
    while time.perf_counter() < deadline and not (once and i == len(paths)):
        path = paths[i % len(paths)]
        i += 1
        start = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        latencies.append(time.perf_counter() - start)
    out.put((latencies, errors, began, time.perf_counter()))


def run(base: str, paths: list[str], headers: dict[str, str], clients: int = 8, seconds: float = 10.0, once: bool = False) -> LoadResult:
    """Hit `paths` round-robin from `clients` processes for `seconds`; with `once`, each path at most once.

    Each path of a `once` run is asked for once (each client stops when its share is done, or at
    `seconds`), so that a run of first requests holds no repeat, which would be a cheaper returning user.
    """
    queue: "mp.Queue[tuple[list[float], int, float, float]]" = mp.Queue()
    # Forking a benchmark that holds gigabytes takes a while per client: they start together, once all exist.
    ready = mp.Barrier(clients + 1)
    # Daemons: a benchmark stopped mid-run (SIGTERM, see bench.common) exits at once instead of joining
    # clients that block on a queue nobody reads any more.
    procs = [mp.Process(target=_client, args=(base, paths[k::clients] or paths, headers, seconds, once, ready, queue), daemon=True) for k in range(clients)]
    for p in procs:
        p.start()
    ready.wait()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    # From the clients' start to the last one's end, by their own clocks (one monotonic clock for
    # every process): ending processes would weigh more in a short once run than in the timed run
    # it is compared with.
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    latencies = np.concatenate([np.array(r[0]) for r in results]) * 1000
    return LoadResult(len(latencies), sum(r[1] for r in results), elapsed, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)))


def report(name: str, result: LoadResult, baseline: LoadResult | None = None, fmt: Callable[[float], str] = "{:.0f}".format) -> str:
    """One line of the bench table."""
    ratio = f"  ratio {result.rps / baseline.rps:.2f}x" if baseline else ""
    return f"{name:<28} {fmt(result.rps):>8} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}{ratio}"


def rounds(
    base: str, paths: Callable[[int], list[str]], headers: dict[str, str], count: int, clients: int = 8, seconds: float = 4.0, once: bool = False
) -> list[tuple[LoadResult, LoadResult]]:
    """`count` pairs of (/healthz, the paths of round k), each baseline measured right before its load.

    A small shared machine's speed drifts by a fifth within a minute, so one baseline for a
    long run measures the drift as much as the path; the median of paired ratios does not.
    """
    pairs = []
    for k in range(count):
        health = run(base, ["/healthz"], {}, clients=clients, seconds=seconds)
        pairs.append((health, run(base, paths(k), headers, clients=clients, seconds=seconds, once=once)))
    return pairs


def median_ratio(pairs: list[tuple[LoadResult, LoadResult]]) -> float:
    """The median over rounds of the path's throughput over its baseline's."""
    return float(np.median([load.rps / health.rps for health, load in pairs]))
