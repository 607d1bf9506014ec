"""Event ingestion rate through POST /v1/events under gunicorn (10,000-event batches).

    .venv/bin/python bench/ingest.py [--events 400000] [--clients 4] [--workers 4]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config, keys, post_json, prepare, server_env, summary  # noqa: E402
from recommender.synthetic import generate  # noqa: E402
from tests.server import gunicorn  # noqa: E402

BATCH = 10_000


def main() -> None:
    """Post synthetic batches from several clients and report events per second."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    config = fresh_config("ingest")
    svc = prepare(config)
    key = keys(svc)["storefront"]
    data = generate(50_000, 20_000, args.events, seed=3)
    bodies = []
    for start in range(0, args.events, BATCH):
        events = [
            {"event_id": f"e{k}", "user_id": f"u{data.users[k]}", "item_id": f"i{data.items[k]}", "type": str(data.types[k]), "timestamp": "2026-11-01T10:00:00Z"}
            for k in range(start, min(start + BATCH, args.events))
        ]
        bodies.append(json.dumps({"events": events}).encode())

    def post(server_base: str, body: bytes) -> dict:
        return post_json(server_base, "/v1/events", body, key)

    env = server_env(config)
    with gunicorn(env, workers=args.workers) as server:
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            answers = list(pool.map(lambda b: post(server.base, b), bodies))
        elapsed = time.perf_counter() - started
        replay_started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            replays = list(pool.map(lambda b: post(server.base, b), bodies[:5]))
        replay_elapsed = time.perf_counter() - replay_started
    accepted = sum(a["accepted"] for a in answers)
    db = "PostgreSQL" if not config.is_sqlite else "SQLite"
    print(f"{db}, gunicorn {args.workers} workers, {args.clients} concurrent clients, batches of {BATCH:,}")
    print(f"ingested {accepted:,} events in {elapsed:.2f} s: {accepted / elapsed:,.0f} events/s (aim: 40,000/s)")
    print(f"replayed {sum(r['duplicates'] for r in replays):,} duplicates in {replay_elapsed:.2f} s: {5 * BATCH / replay_elapsed:,.0f} events/s")
    summary(ingest_events_per_second=accepted / elapsed)


if __name__ == "__main__":
    main()
