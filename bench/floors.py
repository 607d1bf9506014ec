"""How fast a hot path could be on PostgreSQL at best, on this machine: its work plus only what its guarantee costs.

A returning user's recommendations must make one round trip to PostgreSQL (how every worker and
host sees the last purchase, availability change and activation), and a first exposure one
durable write that is exactly-once. This benchmark serves the paths from SQLite, whose own
reads cost a few microseconds in process, and adds to each request the least PostgreSQL work
its guarantee needs (`bench/floor_app.py`): `SELECT 1` through the store's own statement path
for a returning user's recommendations, and a durable `INSERT ... ON CONFLICT DO NOTHING` of one
row keyed like an exposure for an assignment. No statement that reads a user's purchases, or
records an exposure checked against its experiment, costs PostgreSQL less than these, so each
ratio is the most the path could reach on PostgreSQL, before any store code of its own. Beside
them: `/healthz` with the bare work, the paths on SQLite alone, and then on a second server
whose store is PostgreSQL, the two paths as the service serves them (its own data, loaded and
trained the same way).

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
from bench.floor_app import FLOOR_TABLE  # noqa: E402
from bench.load import median_ratio, rounds, run  # noqa: E402
from service.usecases.model_training import request_training  # noqa: E402
from service.usecases.training_run import run_training  # noqa: E402
from tests.server import gunicorn  # noqa: E402

LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _every_round(paths: list[str]) -> Callable[[int], list[str]]:
    return lambda k: paths


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
    if store == "sqlite":
        figures = [
            ("healthz_read", "/healthz + SELECT 1", ["/floor/read/healthz"]),
            ("healthz_write", "/healthz + an exactly-once durable write", ["/floor/write/healthz"]),
            ("recommendations_sqlite", "recommendations, returning, SQLite", recommendations),
            ("recommendations_ceiling", "recommendations, returning, SQLite + SELECT 1", [f"/floor/read{p}" for p in recommendations]),
            ("assignment_sqlite", "assignment, returning, SQLite", assignments),
            ("first_exposures_ceiling", "assignment, returning, SQLite + the write", [f"/floor/write{p}" for p in assignments]),
        ]
    else:
        fresh = [f"/v1/experiments/{experiment}/assignment?user_id=new-{u}" for u in range(200_000)]
        figures = [
            ("recommendations_postgresql", "recommendations, returning, PostgreSQL", recommendations),
            ("first_exposures_postgresql", "assignment, first exposures, PostgreSQL", fresh),
        ]
    env = {**server_env(config), "FLOOR_DATABASE_URL": floor_url}
    medians = {}
    with gunicorn(env, workers=args.workers, app="bench.floor_app:app") as server:
        for _ in range(args.warmups):  # every worker loads the model and reads the experiment
            for paths in (recommendations, assignments):
                run(server.base, paths, headers, clients=args.clients, seconds=2.0)
        for name, label, paths in figures:
            # A first exposure's round k asks for users of its own, as bench/assignment.py's do.
            per_round = _every_round(paths) if "first" not in name else (lambda k, paths=paths: paths[k::args.rounds])
            pairs = rounds(server.base, per_round, headers, args.rounds, clients=args.clients, seconds=args.seconds, warm="first" not in name)
            medians[name] = median_ratio(pairs)
            shown = ", ".join(f"{load.rps / health.rps:.2f}" for health, load in pairs)
            print(f"{label:<50} {medians[name]:.2f}x of /healthz (rounds {shown})", flush=True)
    return medians


def main() -> None:
    """Serve from SQLite with PostgreSQL's least work added, and measure each path against /healthz."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
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
        if server_of_store is not None:
            os.environ["BENCH_DATABASE_URL"] = server_of_store
        medians.update(_measure(name, args, floor_url))
    print(f"returning recommendations: PostgreSQL {medians['recommendations_postgresql']:.2f}x, at best {medians['recommendations_ceiling']:.2f}x "
          f"(aim 0.65x); first exposures: PostgreSQL {medians['first_exposures_postgresql']:.2f}x, at best "
          f"{medians['first_exposures_ceiling']:.2f}x (aim 0.5x)")
    summary(**medians)


if __name__ == "__main__":
    main()
