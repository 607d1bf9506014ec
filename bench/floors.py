"""How much of a hot path's cost on PostgreSQL is its guarantee's round trip or commit, and how much the store's own statements.

A returning user's recommendations make one round trip to PostgreSQL (how every worker and host
sees the last purchase, availability change and activation), and a first exposure one durable,
exactly-once write. This benchmark serves both paths from SQLite through `bench/floor_app.py`,
which adds to each request a bare PostgreSQL statement in place of the store's own: `SELECT 1`,
sent as the store sends its hot statements, instead of the read of a returning user's purchases
(their SQLite read is then answered from memory), and a durable `INSERT ... ON CONFLICT DO
NOTHING` of one row keyed like an exposure on top of a returning user's assignment. Each such
ratio is what the path would reach if its PostgreSQL statement cost no more than the bare one,
with one statement per request and the rest of the request as it is today. Beside them:
`/healthz` with the bare statement, the paths on SQLite alone, and then, on a second server whose
store is PostgreSQL (its own data, loaded and trained the same way), the two paths as served.

All against `/healthz` on the same server, interleaved in half-second slices (`bench.load`),
with returning users warmed on the connection measured, as in `bench/recommendations.py` and
`bench/assignment.py`. PostgreSQL is the server BENCH_DATABASE_URL names (the local one by
default), in databases of this run's own; not in `bench/run_all.py`.

    .venv/bin/python bench/floors.py [--rounds 5] [--seconds 4] [--workers 4] [--clients 8]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.common import _own_postgres_database, fresh_config, keys, load_synthetic, prepare, running_ab, server_env, summary  # noqa: E402
from bench.load import median_ratio, rounds, run  # noqa: E402
from service.usecases.model_training import request_training  # noqa: E402
from service.usecases.training_run import run_training  # noqa: E402
from tests.server import gunicorn  # noqa: E402

LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# What `bench/floor_app.py` writes to: keyed like `exposures`, and nothing else.
FLOOR_TABLE = 'CREATE TABLE floor_writes (k varchar(64) COLLATE "C", u varchar(128) COLLATE "C", PRIMARY KEY (k, u))'


def _every_round(paths: list[str]) -> Callable[[int], list[str]]:
    return lambda k: paths


def _own_share(paths: list[str], count: int) -> Callable[[int], list[str]]:
    return lambda k: paths[k::count]


def _measure(store: str, args: argparse.Namespace, floor_url: str) -> dict[str, float]:
    """The figures of one store, each the median ratio of its rounds to /healthz."""
    config = fresh_config(f"floors-{store}")
    svc = prepare(config)
    users, items, events = 20_000, 10_000, 500_000  # bench/recommendations.py's defaults
    print(f"{store}: {users:,} users, {items:,} items, {events:,} events; an A/B test with 5,000 users exposed", flush=True)
    load_synthetic(svc, users, items, events, say=lambda line: None)
    row = request_training(svc.db, config, "als", {}, activate=True, evaluation={"evaluate": False})
    run_training(svc.db, config, row.version)
    experiment = running_ab(svc, 5_000)
    headers = {"Authorization": f"Bearer {keys(svc)['storefront']}"}
    recommendations = [f"/v1/users/u{u}/recommendations?n=10" for u in range(0, users, 10)]
    assignments = [f"/v1/experiments/{experiment}/assignment?user_id=u{u}" for u in range(5_000)]
    # (name, label, paths, warmed): warmed runs ask for every path once, untimed, on the connection they
    # then measure on; first exposures instead give each round users of its own, never exposed before.
    if store == "sqlite":
        figures = [
            ("healthz_read", "/healthz + SELECT 1", ["/floor/read/healthz"], True),
            ("healthz_write", "/healthz + an exactly-once durable write", ["/floor/write/healthz"], True),
            ("recommendations_sqlite", "recommendations, returning, SQLite", recommendations, True),
            ("recommendations_ceiling", "recommendations, returning, SELECT 1 for the read", [f"/floor/read{p}" for p in recommendations], True),
            ("assignment_sqlite", "assignment, returning, SQLite", assignments, True),
            ("first_exposures_ceiling", "assignment, returning, + the write", [f"/floor/write{p}" for p in assignments], True),
        ]
    else:
        fresh = [f"/v1/experiments/{experiment}/assignment?user_id=new-{u}" for u in range(200_000)]
        figures = [
            ("recommendations_postgresql", "recommendations, returning, PostgreSQL", recommendations, True),
            ("recommendations_postgresql_ceiling", "recommendations, returning, SELECT 1 for PostgreSQL's read", [f"/floor/read{p}" for p in recommendations], True),
            ("first_exposures_postgresql", "assignment, first exposures, PostgreSQL", fresh, False),
            ("first_exposures_postgresql_ceiling", "assignment, returning, PostgreSQL, + the write", [f"/floor/write{p}" for p in assignments], True),
        ]
    env = {**server_env(config), "FLOOR_DATABASE_URL": floor_url}
    medians = {}
    with gunicorn(env, workers=args.workers, app="bench.floor_app:app") as server:
        for _ in range(args.warmups):  # every worker loads the model and reads the experiment
            for paths in (recommendations, assignments):
                run(server.base, paths, headers, clients=args.clients, seconds=2.0)
        for name, label, paths, warmed in figures:
            per_round = _every_round(paths) if warmed else _own_share(paths, args.rounds)
            pairs = rounds(server.base, per_round, headers, args.rounds, clients=args.clients, seconds=args.seconds, warm=warmed)
            medians[name] = median_ratio(pairs)
            shown = ", ".join(f"{load.rps / health.rps:.2f}" for health, load in pairs)
            errors = sum(health.errors + load.errors for health, load in pairs)
            print(f"{label:<60} {medians[name]:.2f}x of /healthz (rounds {shown}; errors {errors})", flush=True)
    return medians


def main() -> None:
    """Measure each path as served and with a bare statement in the store's place, against /healthz, on each store's server."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--stores", default="sqlite,postgresql", help="the servers to measure: sqlite, postgresql or both, comma-separated (SQLite's always first)")
    args = parser.parse_args()
    print(f"gunicorn: {args.workers} workers, {args.clients} concurrent clients; {args.rounds} rounds of {args.seconds:g} s, "
          "each interleaved with /healthz in half-second slices")

    server_url = os.environ.pop("BENCH_DATABASE_URL", None) or LOCAL_POSTGRES
    floor_url = make_url(_own_postgres_database(server_url, "floors")).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(floor_url, autocommit=True) as conn:
        conn.execute(FLOOR_TABLE)
    medians: dict[str, float] = {}
    # SQLite first (BENCH_DATABASE_URL is out of the environment now), then the same on PostgreSQL.
    for name, server_of_store in (("sqlite", None), ("postgresql", server_url)):
        if name not in args.stores.split(","):
            continue
        if server_of_store is not None:
            os.environ["BENCH_DATABASE_URL"] = server_of_store
        medians.update(_measure(name, args, floor_url))
    summary(**medians)


if __name__ == "__main__":
    main()
