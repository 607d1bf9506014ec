"""The at-risk list on a million users: time per page, first and deep, through the use case and HTTP.

User activity is what the endpoint reads (one row per user, kept by event
ingestion), so the million users' rows are written directly, with counts drawn
as if from 10 million power-law events: loading 10 million events through the
API first would take most of an hour here and change nothing the query reads.

    .venv/bin/python bench/at_risk.py [--users 1000000] [--events 10000000] [--pages 20]
    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/at_risk.py
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config, keys, prepare, server_env  # noqa: E402
from service.usecases.users import at_risk  # noqa: E402
from tests.server import gunicorn  # noqa: E402

DAY = 86_400.0


def fill(svc, users: int, events: int, seed: int = 3) -> None:  # noqa: ANN001
    """Activity rows for `users` users sharing `events` events by a power law."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, users + 1) ** 0.9
    counts = rng.multinomial(events, weights / weights.sum())
    purchases = rng.binomial(counts, 0.06)
    revenue = np.round(purchases * rng.gamma(2.0, 20.0, users), 2)
    now = time.time()
    last = now - rng.uniform(0, 180, users) * DAY
    first = last - rng.uniform(0, 365, users) * DAY
    rows = [(f"u{u}", float(first[u]), float(last[u]), int(purchases[u]), float(revenue[u])) for u in range(users) if counts[u] > 0]
    sql = "INSERT INTO user_activity (user_id, first_seen, last_seen, purchases, revenue) VALUES (?, ?, ?, ?, ?)"
    for start in range(0, len(rows), 100_000):
        svc.db.insert_many(sql, rows[start : start + 100_000])
        print(f"  {min(start + 100_000, len(rows)):,} / {len(rows):,} users written", flush=True)
    if not svc.db.is_sqlite:
        with svc.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE user_activity")
            conn.commit()


def timed(fn) -> float:  # noqa: ANN001
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    """Fill, then time pages."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    config = fresh_config("at-risk")
    svc = prepare(config)
    print(f"database: {svc.db.dialect}; {args.users:,} users sharing {args.events:,} events (power law)")
    fill(svc, args.users, args.events)
    cursor, first_pages = None, []
    for _ in range(args.pages):
        started = time.perf_counter()
        page = at_risk(svc.db, 30, 1, 100, cursor)
        first_pages.append(time.perf_counter() - started)
        cursor = page["next_cursor"]
    print(f"use case, idle 30 days, 1+ purchases, 100 a page: page 1 {first_pages[0] * 1000:.1f} ms, pages 2-{args.pages} median {statistics.median(first_pages[1:]) * 1000:.1f} ms")
    rare = [timed(lambda: at_risk(svc.db, 170, 20, 100, None)) for _ in range(5)]
    print(f"use case, a rare filter (idle 170 days, 20+ purchases): median {statistics.median(rare) * 1000:.1f} ms")
    key = keys(svc)["analyst"]
    with gunicorn(server_env(config), workers=1) as server:
        server.request("GET", "/v1/users/at-risk?limit=1", key=key)
        http = []
        cursor = None
        for _ in range(args.pages):
            path = "/v1/users/at-risk?idle_days=30&min_purchases=1&limit=100" + (f"&cursor={cursor}" if cursor else "")
            started = time.perf_counter()
            status, body = server.request("GET", path, key=key)
            http.append(time.perf_counter() - started)
            assert status == 200, body
            cursor = body["next_cursor"]
    print(f"HTTP GET /v1/users/at-risk, 100 a page, {args.pages} pages: median {statistics.median(http) * 1000:.1f} ms, max {max(http) * 1000:.1f} ms (aim: under 1 s)")


if __name__ == "__main__":
    main()
