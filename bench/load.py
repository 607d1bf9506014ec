"""A small closed-loop HTTP load generator: N client processes with keep-alive connections."""
from __future__ import annotations

import http.client
import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
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
    base: str,
    paths: list[str],
    headers: dict[str, str],
    seconds: float,
    taken: "Synchronized[int] | None",
    ready: "Barrier",
    out: "mp.Queue[tuple[list[float], int, float, float]]",
) -> None:
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    latencies: list[float] = []
    errors = 0
    ready.wait()
    began = time.perf_counter()
    deadline = began + seconds
    i = 0
    while time.perf_counter() < deadline:
        if taken is None:
            path = paths[i % len(paths)]
            i += 1
        else:  # the next path nobody has taken: the clients end within one request of each other
            with taken.get_lock():
                j = taken.value
                taken.value = j + 1
            if j >= len(paths):
                break
            path = paths[j]
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
    """Hit `paths` from `clients` processes for `seconds`, round-robin; with `once`, each path at most once.

    A `once` run hands out the paths one at a time from a shared counter and ends when they are all
    taken (or at `seconds`): a run of first requests then holds no repeat, which would be a cheaper
    returning user, and no client idles while another still has a share to do.
    """
    if not paths:
        raise ValueError("no paths to ask for")
    queue: "mp.Queue[tuple[list[float], int, float, float]]" = mp.Queue()
    taken = mp.Value("q", 0) if once else None
    # Forking a benchmark that holds gigabytes takes a while per client: they start together, once all exist.
    ready = mp.Barrier(clients + 1)
    shares = [paths] * clients if once else [paths[k::clients] or paths for k in range(clients)]
    # Daemons: a benchmark stopped mid-run (SIGTERM, see bench.common) exits at once instead of joining
    # clients that block on a queue nobody reads any more.
    procs = [mp.Process(target=_client, args=(base, share, headers, seconds, taken, ready, queue), daemon=True) for share in shares]
    for p in procs:
        p.start()
    ready.wait(timeout=120)  # a client that died before it was ready breaks the barrier instead of hanging the run
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    # From the clients' start to the last one's end, by their own clocks (one monotonic clock for
    # every process): ending processes would weigh more in a short once run than in the timed run
    # it is compared with.
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    latencies = np.concatenate([np.array(r[0]) for r in results]) * 1000
    if once:
        assert len(latencies) <= len(paths), "a once run asked for a path twice"
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
