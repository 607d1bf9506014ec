"""What one first exposure costs PostgreSQL, with its commit flushed and without (PostgreSQL only).

Eight connections send the store's own exposure statement at a fixed total rate (about
what `bench/assignment.py` reaches for first exposures), once with `synchronous_commit`
on, as the service runs, and once with it off, which would lose acknowledged exposures in
a crash of the database and is measured only to show what the flush costs. Each line is
the CPU PostgreSQL's processes, and the whole machine, spent per statement.

    BENCH_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/commit_cost.py [--rate 1840] [--seconds 4]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench.common import fresh_config, prepare, running_ab  # noqa: E402
from bench.cpu import _busy_ticks, _postgres_ticks, _TICKS  # noqa: E402
from service.store import experiments  # noqa: E402
from service.store.exposures import _EXPOSE_ONE  # noqa: E402
from service.store.prepared import numbered  # noqa: E402

CONNECTIONS = 8


def main() -> None:
    """Measure the exposure statement at a fixed rate, flushed and not."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1840.0, help="statements a second, all connections together")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    if not os.environ.get("BENCH_DATABASE_URL"):
        raise SystemExit("commit_cost: set BENCH_DATABASE_URL to a PostgreSQL server")
    config = fresh_config("commit")
    svc = prepare(config)
    key = running_ab(svc, 10)
    stamp = experiments.stamp(svc.db, key)
    url = config.database_url.replace("+psycopg", "")
    print(f"{CONNECTIONS} connections, {args.rate:,.0f} first exposures a second in all, {args.seconds:g} s each")
    for rounds in range(2):
        for sync in ("on", "off"):
            per_statement, machine, done = _measure(url, key, stamp, sync, args.rate / CONNECTIONS, args.seconds)
            print(f"synchronous_commit {sync:<3}  {done / args.seconds:,.0f}/s  PostgreSQL {per_statement:.0f} µs a statement, machine {machine:.0f} µs")


def _measure(url: str, key: str, stamp: experiments.Stamp, sync: str, rate: float, seconds: float) -> tuple[float, float, int]:
    text, _ = numbered(_EXPOSE_ONE)
    conns = [psycopg.connect(url, autocommit=True) for _ in range(CONNECTIONS)]
    for conn in conns:
        conn.execute(f"SET synchronous_commit = {sync}")
        conn.pgconn.prepare(b"expose", text, None)
    counts = [0] * CONNECTIONS
    tag = f"{sync}-{time.monotonic()}"

    def send(i: int) -> None:
        pgconn, gap = conns[i].pgconn, 1 / rate
        due = time.monotonic()
        end = due + seconds
        while time.monotonic() < end:
            user = f"{tag}-{i}-{counts[i]}".encode()
            params = [key.encode(), user, b"control", b"0.5", b"1700000000", b"t", key.encode(), str(stamp.revision).encode(),
                      stamp.salt.encode(), b"f", key.encode(), key.encode(), user]
            result = pgconn.exec_prepared(b"expose", params)  # type: ignore[arg-type]
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                raise RuntimeError(result.get_error_message())
            counts[i] += 1
            due += gap
            time.sleep(max(0.0, due - time.monotonic()))

    before = (_postgres_ticks(), _busy_ticks())
    threads = [threading.Thread(target=send, args=(i,)) for i in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = (_postgres_ticks(), _busy_ticks())
    for conn in conns:
        conn.close()
    done = max(1, sum(counts))
    database, busy = ((a - b) * 1e6 / _TICKS / done for a, b in zip(after, before))
    return database, busy, done


if __name__ == "__main__":
    main()
