"""Assignment throughput for a running A/B experiment under gunicorn, as a ratio to /healthz.

Returning users (already exposed) are the steady state of a storefront; new
users cost one extra write, so both are measured. A second experiment targets
users by behaviour the service stores (purchases and revenue, which everyone
here passes): its new users also cost the read of their activity.

    .venv/bin/python bench/assignment.py [--seconds 10] [--clients 8] [--workers 4]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config, keys, prepare, running_ab, server_env, summary  # noqa: E402
from bench.load import report, run  # noqa: E402
from tests.server import gunicorn  # noqa: E402


def main() -> None:
    """Create a running experiment, expose a pool of users, then measure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--users", type=int, default=5_000)
    args = parser.parse_args()

    config = fresh_config("assign")
    svc = prepare(config)
    key = running_ab(svc, args.users)  # the returning users' first exposures
    rule = {"all": [{"attribute": "purchases", "op": "gte", "value": 0}, {"attribute": "revenue", "op": "gte", "value": 0}]}
    targeted = running_ab(svc, args.users, key="targeted", targeting=rule)
    headers = {"Authorization": f"Bearer {keys(svc)['storefront']}"}
    env = server_env(config)
    returning = [f"/v1/experiments/{key}/assignment?user_id=u{u}" for u in range(args.users)]
    with gunicorn(env, workers=args.workers) as server:
        run(server.base, returning, headers, clients=args.clients, seconds=2.0)  # warm every worker's definition cache
        health = run(server.base, ["/healthz"], {}, clients=args.clients, seconds=args.seconds)
        sticky = run(server.base, returning, headers, clients=args.clients, seconds=args.seconds)
        fresh = [f"/v1/experiments/{key}/assignment?user_id=new-{u}" for u in range(400_000)]
        first = run(server.base, fresh, headers, clients=args.clients, seconds=args.seconds)
        returning_targeted = [f"/v1/experiments/{targeted}/assignment?user_id=u{u}" for u in range(args.users)]
        run(server.base, returning_targeted, headers, clients=args.clients, seconds=2.0)
        health_again = run(server.base, ["/healthz"], {}, clients=args.clients, seconds=args.seconds)
        sticky_targeted = run(server.base, returning_targeted, headers, clients=args.clients, seconds=args.seconds)
        fresh_targeted = [f"/v1/experiments/{targeted}/assignment?user_id=new-{u}" for u in range(400_000)]
        first_targeted = run(server.base, fresh_targeted, headers, clients=args.clients, seconds=args.seconds)
    print(f"database: {svc.db.dialect}; gunicorn: {args.workers} workers, {args.clients} concurrent clients, {args.seconds:.0f} s each")
    print(report("GET /healthz (baseline)", health))
    print(report("GET assignment, returning users", sticky, health))
    print(report("GET assignment, first exposures", first, health))
    print(report("GET /healthz (again)", health_again))
    print(report("targeted, returning users", sticky_targeted, health_again))
    print(report("targeted, first exposures", first_targeted, health_again))
    summary(
        assignment_returning=sticky.rps / health.rps,
        assignment_first=first.rps / health.rps,
        targeted_returning=sticky_targeted.rps / health_again.rps,
        targeted_first=first_targeted.rps / health_again.rps,
    )


if __name__ == "__main__":
    main()
