"""What one first exposure costs PostgreSQL, with its commit flushed and without (PostgreSQL only).

Eight connections send the store's own exposure statement at a fixed total rate (about
what `bench/assignment.py` reaches for first exposures), once with `synchronous_commit`
on, as the service runs, and once with it off, which would lose acknowledged exposures in
a crash of the database and is measured only to show what the flush costs. Each line is
the CPU PostgreSQL's processes, and the whole machine, spent per statement.

`--rows 1,2,4` instead sends first exposures several to a statement (one commit each, at the
same rate of rows), to show what a worker would save by sending its threads' exposures together;
each line is then the CPU per row.

    BENCH_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/commit_cost.py [--rate 1840] [--seconds 4] [--rows 1,2,4]
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
    parser.add_argument("--rows", help="comma-separated rows per statement, e.g. 1,2,4 (flushed commits only)")
    args = parser.parse_args()
    if not os.environ.get("BENCH_DATABASE_URL"):
        raise SystemExit("commit_cost: set BENCH_DATABASE_URL to a PostgreSQL server")
    config = fresh_config("commit")
    svc = prepare(config)
    key = running_ab(svc, 10)
    stamp = experiments.stamp(svc.db, key)
    url = config.database_url.replace("+psycopg", "")
    if args.rows:
        print(f"{CONNECTIONS} connections, {args.rate:,.0f} first exposures a second in all, {args.seconds:g} s each, synchronous_commit on")
        for rows in [int(r) for r in args.rows.split(",")] * 2:
            per_row, machine, done = _measure(url, key, stamp, "on", args.rate / CONNECTIONS, args.seconds, rows)
            print(f"{rows} a statement  {done / args.seconds:,.0f} rows/s  PostgreSQL {per_row:.0f} µs a row, machine {machine:.0f} µs")
        return
    print(f"{CONNECTIONS} connections, {args.rate:,.0f} first exposures a second in all, {args.seconds:g} s each")
    for rounds in range(2):
        for sync in ("on", "off"):
            per_statement, machine, done = _measure(url, key, stamp, sync, args.rate / CONNECTIONS, args.seconds)
            print(f"synchronous_commit {sync:<3}  {done / args.seconds:,.0f}/s  PostgreSQL {per_statement:.0f} µs a statement, machine {machine:.0f} µs")


def _rows_statement(rows: int) -> bytes:
    """The store's exposure insert for `rows` users in one statement, as a worker sending its threads' exposures together would."""
    values = ", ".join(f"(${6 * i + 1}, ${6 * i + 2}, ${6 * i + 3}, ${6 * i + 4}::float8, ${6 * i + 5}::float8, ${6 * i + 6}::bool)" for i in range(rows))
    tail = 6 * rows
    return (
        f"INSERT INTO exposures (experiment_key, user_id, arm, probability, exposed_at, counted) SELECT v.* FROM (VALUES {values}) v "
        f"WHERE EXISTS (SELECT 1 FROM experiments WHERE key = ${tail + 1} AND status = 'running' AND revision = ${tail + 2}::int AND salt = ${tail + 3}) "
        "ON CONFLICT (experiment_key, user_id) DO NOTHING RETURNING user_id, arm, probability, exposed_at"
    ).encode()


def _measure(url: str, key: str, stamp: experiments.Stamp, sync: str, row_rate: float, seconds: float, rows: int = 0) -> tuple[float, float, int]:
    """CPU per row of PostgreSQL and of the machine; `rows` 0 sends the store's own statement, else that many rows a statement."""
    statement = _rows_statement(rows) if rows else numbered(_EXPOSE_ONE)[0]
    conns = [psycopg.connect(url, autocommit=True) for _ in range(CONNECTIONS)]
    for conn in conns:
        conn.execute(f"SET synchronous_commit = {sync}")
        conn.pgconn.prepare(b"expose", statement, None)
    counts = [0] * CONNECTIONS
    tag = f"{sync}-{rows}-{time.monotonic()}"
    revision, salt = str(stamp.revision).encode(), stamp.salt.encode()

    def params(i: int) -> list[bytes]:
        user = f"{tag}-{i}-{counts[i]}".encode()
        if not rows:
            return [key.encode(), user, b"control", b"0.5", b"1700000000", b"t", key.encode(), revision, salt, b"f", key.encode(), key.encode(), user]
        many = [value for j in range(rows) for value in (key.encode(), user + f"-{j}".encode(), b"control", b"0.5", b"1700000000", b"t")]
        return [*many, key.encode(), revision, salt]

    def send(i: int) -> None:
        pgconn, gap = conns[i].pgconn, max(rows, 1) / row_rate
        due = time.monotonic()
        end = due + seconds
        while time.monotonic() < end:
            result = pgconn.exec_prepared(b"expose", params(i))  # type: ignore[arg-type]
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
    done = max(1, sum(counts) * max(rows, 1))
    database, busy = ((a - b) * 1e6 / _TICKS / done for a, b in zip(after, before))
    return database, busy, done


if __name__ == "__main__":
    main()
