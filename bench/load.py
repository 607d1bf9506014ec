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


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[http.client.HTTPConnection, bool]:
    """GET `path` on the client's keep-alive connection: the connection to go on with, and whether it answered 200."""
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return conn, resp.status == 200
    except (OSError, http.client.HTTPException):
        conn.close()
        return http.client.HTTPConnection(conn.host, conn.port, timeout=30), False


def _untaken(paths: list[str], taken: "Synchronized[int]") -> str | None:
    """The next of `paths` that no client has taken yet, or None once all are."""
    with taken.get_lock():
        j = taken.value
        taken.value = j + 1
    return paths[j] if j < len(paths) else None


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
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
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
            untaken = _untaken(paths, taken)
            if untaken is None:
                break
            path = untaken
        start = time.perf_counter()
        conn, ok = _get(conn, path, headers)
        errors += not ok
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


def _alternating_client(
    base: str,
    phases: tuple[tuple[list[str], dict[str, str]], tuple[list[str], dict[str, str]]],
    start_at: "Synchronized[float]",
    length: float,
    slices: int,
    taken: "Synchronized[int] | None",
    ready: "Barrier",
    out: "mp.Queue[list[tuple[list[float], int, float]]]",
    warm: bool = False,
) -> None:
    """Ask for the baseline's paths and the load's in turn, in `slices` slices of `length` seconds from `start_at`.

    Slices go in pairs, baseline, baseline, load, load, ..., baseline, baseline, and only the second
    of each pair counts: what one phase leaves behind (a request still running, the database's
    writes after a commit) falls into an uncounted slice rather than onto the other phase, while the
    counted slices of both lie symmetrically about the run's middle, so that a drift weighs on both
    alike. Each phase keeps its latencies, errors and the seconds this client was busy in it: from
    the slice's start, or the end of the request it carried over, to the end of its last request. With `warm`, the
    client first asks for each of the load's paths once, untimed, on the connection it keeps, so that
    the worker behind that connection has answered every one of them before the clock starts.
    """
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    kept: list[tuple[list[float], int, float]] = [([], 0, 0.0), ([], 0, 0.0)]
    cursors = [0, 0]
    for path in phases[1][0] if warm else ():
        conn, _ = _get(conn, path, phases[1][1])
    ready.wait()
    while start_at.value == 0.0:  # set by the parent once every client is ready
        time.sleep(0.001)
    start = start_at.value
    for s in range(slices):
        phase = (s // 2) % 2
        paths, headers = phases[phase]
        latencies: list[float] = []
        errors = 0
        time.sleep(max(0.0, start + s * length - time.perf_counter()))
        end = start + (s + 1) * length
        began = now = time.perf_counter()
        while now < end:
            if phase == 1 and taken is not None:
                untaken = _untaken(paths, taken)
                if untaken is None:
                    break
                path = untaken
            else:
                path = paths[cursors[phase] % len(paths)]
                cursors[phase] += 1
            sent = time.perf_counter()
            conn, ok = _get(conn, path, headers)
            errors += not ok
            now = time.perf_counter()
            latencies.append(now - sent)
        if s % 2:
            counted, counted_errors, busy = kept[phase]
            kept[phase] = (counted + latencies, counted_errors + errors, busy + (now - began))
    out.put(kept)


def interleaved(
    base: str, paths: list[str], headers: dict[str, str], clients: int = 8, seconds: float = 4.0, once: bool = False, slice_seconds: float = 0.5,
    warm: bool = False,
) -> tuple[LoadResult, LoadResult]:
    """(/healthz, `paths`) from the same `clients` processes, in alternating slices of `slice_seconds`.

    Two back-to-back runs of a few seconds met different machines: on two shared cores a run's
    speed drifts by a fifth within seconds, and the ratios of one benchmark's rounds ranged from
    0.35x to 0.54x. Slices of half a second put both under the same drift. The run lasts about
    2 `seconds`, as two timed runs would, and counts about half of that of each phase: the other
    slices warm each phase up (see `_alternating_client`). Each result's
    seconds are the clients' busy seconds in its phase over the number of clients, so that its rps
    is that of every client busy. With `once`, each of `paths` is asked for at most once. With `warm`, each client
    first asks for its share once, untimed, on its own connection (see `_alternating_client`): a
    worker remembers only what it answered, and connections land on any worker.
    """
    if not paths:
        raise ValueError("no paths to ask for")
    # 2 + 4 k slices: baseline pairs at both ends, k pairs of each phase counted in half the time.
    slices = 2 + 4 * max(1, round(seconds / slice_seconds / 2))
    queue: "mp.Queue[list[tuple[list[float], int, float]]]" = mp.Queue()
    taken = mp.Value("q", 0) if once else None
    start_at = mp.Value("d", 0.0)
    ready = mp.Barrier(clients + 1)
    health: tuple[list[str], dict[str, str]] = (["/healthz"], {})
    # Each client its own share of a timed run's paths, as `run` gives them.
    shares = [paths] * clients if once else [paths[k::clients] or paths for k in range(clients)]
    procs = [mp.Process(target=_alternating_client, args=(base, (health, (share, headers)), start_at, slice_seconds, slices, taken, ready, queue, warm and not once),
                        daemon=True) for share in shares]
    for p in procs:
        p.start()
    ready.wait(timeout=120)
    start_at.value = time.perf_counter() + 0.05
    results = [queue.get(timeout=slices * slice_seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    if once:
        assert sum(len(r[1][0]) for r in results) <= len(paths), "a once run asked for a path twice"
    return _phase(results, 0, clients), _phase(results, 1, clients)


def _phase(results: list[list[tuple[list[float], int, float]]], phase: int, clients: int) -> LoadResult:
    latencies = np.concatenate([np.array(r[phase][0]) for r in results]) * 1000
    busy = sum(r[phase][2] for r in results) / clients
    return LoadResult(len(latencies), sum(r[phase][1] for r in results), busy, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)))


def rounds(
    base: str, paths: Callable[[int], list[str]], headers: dict[str, str], count: int, clients: int = 8, seconds: float = 4.0, once: bool = False,
    warm: bool = False,
) -> list[tuple[LoadResult, LoadResult]]:
    """`count` pairs of (/healthz, the paths of round k), each pair measured interleaved (`interleaved`), `warm` or not."""
    return [interleaved(base, paths(k), headers, clients=clients, seconds=seconds, once=once, warm=warm) for k in range(count)]


def median_ratio(pairs: list[tuple[LoadResult, LoadResult]]) -> float:
    """The median over rounds of the path's throughput over its baseline's."""
    return float(np.median([load.rps / health.rps for health, load in pairs]))
