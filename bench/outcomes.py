"""Outcome ingestion rate through POST /v1/outcomes under gunicorn, against event ingestion.

Outcomes do more than events (an exposure lookup, a per-user total upsert and,
for bandits, statistics updates), so the baseline is POST /v1/events with the
same number of rows and batch size on the same server.

    .venv/bin/python bench/outcomes.py [--users 100000] [--clients 4] [--workers 4]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config, keys, post_json, prepare, running_ab, server_env  # noqa: E402
from service.usecases.demo_experiments import AB  # noqa: E402
from tests.server import gunicorn  # noqa: E402

BATCH = 10_000


def main() -> None:
    """Expose users, then post one outcome per user and one event per user in batches."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    config = fresh_config("outcomes")
    svc = prepare(config)
    started = time.perf_counter()
    running_ab(svc, args.users)
    print(f"exposed {args.users:,} users directly in {time.perf_counter() - started:.1f} s")
    key = keys(svc)["storefront"]
    outcome_bodies, event_bodies = [], []
    for start in range(0, args.users, BATCH):
        ids = range(start, min(start + BATCH, args.users))
        outcome_bodies.append(json.dumps({"outcomes": [{"outcome_id": f"o{u}", "experiment": AB["key"], "user_id": f"u{u}", "metric": "spend", "value": 12.5} for u in ids]}).encode())
        event_bodies.append(json.dumps({"events": [{"event_id": f"e{u}", "user_id": f"u{u}", "item_id": "i1", "type": "purchase", "value": 12.5} for u in ids]}).encode())

    def rate(base: str, path: str, bodies: list[bytes], field: str) -> tuple[int, float]:
        began = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            answers = list(pool.map(lambda b: post_json(base, path, b, key), bodies))
        return sum(a[field] for a in answers), time.perf_counter() - began

    env = server_env(config)
    with gunicorn(env, workers=args.workers) as server:
        events, events_s = rate(server.base, "/v1/events", event_bodies, "accepted")
        outcomes, outcomes_s = rate(server.base, "/v1/outcomes", outcome_bodies, "accepted")
        replayed, replay_s = rate(server.base, "/v1/outcomes", outcome_bodies, "duplicates")
    print(f"database: {svc.db.dialect}; gunicorn {args.workers} workers, {args.clients} clients, batches of {BATCH:,}")
    print(f"POST /v1/events (baseline)   {events:>9,} rows  {events / events_s:>9,.0f} rows/s")
    print(f"POST /v1/outcomes            {outcomes:>9,} rows  {outcomes / outcomes_s:>9,.0f} rows/s  {events_s / outcomes_s:.2f}x")
    print(f"POST /v1/outcomes, replayed  {replayed:>9,} rows  {replayed / replay_s:>9,.0f} rows/s  {events_s / replay_s:.2f}x")


if __name__ == "__main__":
    main()
