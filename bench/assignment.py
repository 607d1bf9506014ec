"""Assignment throughput for a running A/B experiment under gunicorn, as a ratio to /healthz.

Returning users (already exposed) are the steady state of a storefront; new
users cost one extra write, so both are measured. A second experiment targets
users by behaviour the service stores (purchases and revenue, which everyone
here passes): its new users also cost the read of their activity.

Returning users are measured as the worker answering has answered them before,
like the recommendations benchmark's: each worker remembers the exposures it has
answered, and each run's new connections land on any worker, so each client
first asks for its share of the users once, untimed, on the connection it then
measures on (`bench.load.interleaved`'s `warm`). A returning user a worker meets
for the first time costs it one read, as a targeted experiment's new user does.

    .venv/bin/python bench/assignment.py [--rounds 5] [--seconds 4] [--warmups 4] [--clients 8] [--workers 4]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config, keys, prepare, running_ab, server_env, summary  # noqa: E402
from bench.cpu import split_line  # noqa: E402
from bench.load import median_ratio, report, rounds, run  # noqa: E402
from bench.run_all import AIMS  # noqa: E402
from tests.server import gunicorn  # noqa: E402

# Each measured path's figure in the summary, and so its aim in `bench.run_all.AIMS`.
_SUMMARY_KEYS = {"returning": "assignment_returning", "first exposures": "assignment_first",
                 "targeted returning": "targeted_returning", "targeted first": "targeted_first"}


def main() -> None:
    """Create a running experiment, expose a pool of users, then measure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmups", type=int, default=4)
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
    returning_targeted = [f"/v1/experiments/{targeted}/assignment?user_id=u{u}" for u in range(args.users)]

    def fresh(experiment: str) -> Callable[[int], list[str]]:
        # Every round exposes users nobody has seen, in as many as it could reach.
        return lambda k: [f"/v1/experiments/{experiment}/assignment?user_id=new-{k}-{u}" for u in range(100_000)]

    measured = {}
    with gunicorn(env, workers=args.workers) as server:
        for _ in range(max(1, args.warmups)):  # every worker reads each definition and each returning user once
            for warm in (returning, returning_targeted):
                run(server.base, warm, headers, clients=args.clients, seconds=2.0)
        for name, paths in (
            ("returning", lambda k: returning),
            ("first exposures", fresh(key)),
            ("targeted returning", lambda k: returning_targeted),
            ("targeted first", fresh(targeted)),
        ):
            measured[name] = rounds(server.base, paths, headers, args.rounds, clients=args.clients, seconds=args.seconds, warm="returning" in name)
        pids = [server.process.pid, *server.worker_pids()]
        splits = [split_line("GET /healthz", server.base, pids, ["/healthz"], {}, args.clients, args.seconds)]
        for name, asked in (("returning", returning), ("first exposures", fresh(key)(args.rounds)), ("targeted first", fresh(targeted)(args.rounds))):
            splits.append(split_line(name, server.base, pids, asked, headers, args.clients, args.seconds))
    print(f"database: {svc.db.dialect}; gunicorn: {args.workers} workers, {args.clients} concurrent clients; "
          f"{args.warmups} warm-up runs, then {args.rounds} rounds of {args.seconds:g} s each, interleaved with /healthz in half-second slices")
    for name, pairs in measured.items():
        for k, (health, load) in enumerate(pairs, 1):
            print(report(f"round {k}: GET /healthz", health))
            print(report(f"round {k}: {name}", load, health))
        aim = AIMS[_SUMMARY_KEYS[name]][1]
        print(f"{name}: median of {len(pairs)} rounds {median_ratio(pairs):.2f}x of /healthz" + ("" if aim is None else f" (aim on PostgreSQL {aim}x)"))
    print("\n".join(line for line in splits if line))
    summary(**{_SUMMARY_KEYS[name]: median_ratio(pairs) for name, pairs in measured.items()})


if __name__ == "__main__":
    main()
