"""Recommendation throughput and latency under gunicorn, as a ratio to /healthz on the same server.

Two kinds of request: returning users, whose best items every worker already
remembers for the active version, and first requests, for users nobody asked
about before, which score the whole catalogue. A worker remembers only the
users it served, and each run's new connections land on any worker, so the
warm-up is --warmups short runs rather than one. On a small shared machine
/healthz itself varies by a fifth between runs, so each figure is measured
interleaved with /healthz in half-second slices (`bench.load.interleaved`);
returning users in --rounds such rounds, and the median ratio is reported.
Before each round every client asks for its share of the returning users
once, untimed, on the connection it then measures on: its worker has then
served each of them, which warm-up runs on fresh connections left to chance:
a run's connections land on any worker, so after four runs a worker can have
missed a sizeable share of the users, each then a first request to it.

With --items at or above ANN_MIN_ITEMS (200,000 by default) the model gets an approximate
nearest-neighbour index, and the run measures it instead: recall@10 of the index against
exact scoring, training with and without the index, and first requests (which search the
index) against the same factors scored exactly (a twin version without the index, activated
on the same server), each as a ratio to /healthz.

    .venv/bin/python bench/recommendations.py [--seconds 4] [--rounds 7] [--warmups 4] [--clients 8] [--workers 4]
    .venv/bin/python bench/recommendations.py --items 1000000 --events 3000000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config, keys, load_synthetic, prepare, server_env, summary  # noqa: E402
from bench.cpu import split_line  # noqa: E402
from bench.load import interleaved, median_ratio, report, rounds, run  # noqa: E402
from bench.run_all import AIMS  # noqa: E402
from tests.server import gunicorn  # noqa: E402
from service.usecases.model_training import request_training  # noqa: E402
from service.usecases.training_run import run_training  # noqa: E402
from bench.big_catalogue import big_catalogue  # noqa: E402
from recommender.ann import AnnSettings  # noqa: E402


def main() -> None:
    """Load data, train, serve, and measure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmups", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=500_000)
    args = parser.parse_args()
    if AnnSettings().applies_to(args.items):
        big_catalogue(args)
        return

    config = fresh_config("recs")
    svc = prepare(config)
    print(f"data: {args.users:,} users, {args.items:,} items, {args.events:,} events (power-law popularity)")
    load_synthetic(svc, args.users, args.items, args.events)
    row = request_training(svc.db, config, "als", {}, activate=True, evaluation={"evaluate": False})
    model = run_training(svc.db, config, row.version)
    print(f"model {model.version}: {model.status} in {model.training_seconds:.1f} s")
    key = keys(svc)["storefront"]
    env = server_env(config)
    step = max(1, args.users // 2000)
    returning = [f"/v1/users/u{u}/recommendations?n=10" for u in range(0, args.users, step)]
    first = [f"/v1/users/u{u}/recommendations?n=10" for u in range(args.users) if u % step]
    headers = {"Authorization": f"Bearer {key}"}
    with gunicorn(env, workers=args.workers) as server:
        for _ in range(args.warmups):  # load the model; every worker remembers these users
            run(server.base, returning, headers, clients=args.clients, seconds=args.seconds)
        pairs = rounds(server.base, lambda k: returning, headers, args.rounds, clients=args.clients, seconds=args.seconds, warm=True)
        health, cold = interleaved(server.base, first, headers, clients=args.clients, seconds=args.seconds, once=True)
        pids = [server.process.pid, *server.worker_pids()]
        splits = [split_line(name, server.base, pids, paths, h, args.clients, args.seconds)
                  for name, paths, h in (("GET /healthz", ["/healthz"], {}), ("returning", returning, headers))]
    print(f"gunicorn: {args.workers} workers, {args.clients} concurrent clients, {args.seconds:g} s each")
    for k, (base, warm) in enumerate(pairs, 1):
        print(report(f"round {k}: GET /healthz", base))
        print(report(f"round {k}: {len(returning):,} returning", warm, base))
    print(f"returning users, median of {len(pairs)} rounds: {median_ratio(pairs):.2f}x of /healthz (aim on PostgreSQL {AIMS['recommendations_returning'][1]}x)")
    print(report("GET /healthz", health))
    print(report(f"recs, first requests ({cold.requests:,} users, each once)", cold, health))
    print("\n".join(line for line in splits if line))
    summary(recommendations_returning=median_ratio(pairs), recommendations_first=cold.rps / health.rps)

if __name__ == "__main__":
    main()
