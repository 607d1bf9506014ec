"""Time of GET /results for 1,000,000 exposed users and 1,000,000 outcomes, against plain SQL.

Two baselines run in the same process on the same database:
- raw: one aggregate query that computes the same per-arm sums straight from
  the exposures and outcomes tables (what an analyst would write by hand);
- totals: the smallest queries over the per-user totals the service maintains.
The tables are filled with bulk inserts (the HTTP ingestion path is measured
by the tests, not here).

    .venv/bin/python bench/results.py [--users 1000000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config, keys, prepare, summary  # noqa: E402
from service.usecases.demo_experiments import AB  # noqa: E402
from service.usecases import experiments as store  # noqa: E402

RAW = (
    "SELECT arm, COUNT(*), SUM(v), SUM(v * v) FROM ("
    "SELECT x.arm AS arm, x.user_id, COALESCE(SUM(o.value), 0) AS v FROM exposures x "
    "LEFT JOIN outcomes o ON o.experiment_key = x.experiment_key AND o.user_id = x.user_id AND o.metric = ? "
    "WHERE x.experiment_key = ? GROUP BY x.arm, x.user_id) per_user GROUP BY arm"
)
# The same raw query for revenue from events after exposure, as an analyst would write it.
RAW_REVENUE = (
    "SELECT arm, COUNT(*), SUM(v), SUM(v * v) FROM ("
    "SELECT x.arm AS arm, x.user_id, COALESCE(SUM(CASE WHEN e.type = 'purchase' AND e.ts >= x.exposed_at THEN e.value ELSE 0 END), 0) AS v "
    "FROM exposures x LEFT JOIN events e ON e.user_id = x.user_id AND e.ts >= x.exposed_at "
    "WHERE x.experiment_key = ? GROUP BY x.arm, x.user_id) per_user GROUP BY arm"
)
TOTALS = (
    "SELECT arm, COUNT(*) FROM exposures WHERE experiment_key = ? GROUP BY arm",
    # A user's value is total + total_low (what rounding took from the running total), as the service reads it.
    "SELECT arm, SUM(total + total_low), SUM((total + total_low) * (total + total_low)) FROM user_metric_totals "
    "WHERE experiment_key = ? AND metric = ? GROUP BY arm",
)


def load(svc, key: str, users: int) -> None:  # noqa: ANN001
    """Exposures, one spend outcome per user, and the per-user totals, in 100,000-row transactions."""
    rng = np.random.default_rng(3)
    arms = [a["key"] for a in AB["arms"]]
    now = time.time()
    exposed = now - 86_400
    for start in range(0, users, 100_000):
        ids = range(start, min(start + 100_000, users))
        arm_of = rng.integers(0, len(arms), size=len(ids))
        spend = np.round(rng.gamma(2.0, 20.0, size=len(ids)), 2)
        svc.db.insert_many("INSERT INTO exposures (experiment_key, user_id, arm, probability, exposed_at) VALUES (?, ?, ?, ?, ?)",
                           [(key, f"u{u}", arms[a], 1 / 3, exposed) for u, a in zip(ids, arm_of)])
        svc.db.insert_many("INSERT INTO outcomes (outcome_id, experiment_key, user_id, metric, value, ts, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(f"o{u}", key, f"u{u}", "spend", float(v), now, now) for u, v in zip(ids, spend)])
        svc.db.insert_many("INSERT INTO user_metric_totals (experiment_key, metric, user_id, arm, total, first_positive_ts) VALUES (?, ?, ?, ?, ?, ?)",
                           [(key, "spend", f"u{u}", arms[a], float(v), now) for u, a, v in zip(ids, arm_of, spend)])
        # One purchase in the week before exposure and one after, for revenue with CUPED.
        before = np.round(spend * rng.uniform(0.5, 1.5, size=len(ids)), 2)
        svc.db.insert_many("INSERT INTO events (event_id, user_id, item_id, type, ts, value, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(f"{tag}{u}", f"u{u}", "i1", "purchase", ts, float(v), now) for u, b, v in zip(ids, before, spend)
                            for tag, ts, v in (("b", exposed - 7 * 86_400, b), ("a", exposed + 3_600, v))])
        print(f"  loaded {ids.stop:,} / {users:,} users", flush=True)
    # Fresh planner statistics, as after any bulk load; without them SQLite joins outcomes
    # through the (experiment, metric, ts) index and the raw baseline turns quadratic.
    with svc.db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def timed(fn, repeat: int) -> float:  # noqa: ANN001
    """Median seconds of `repeat` calls after one warm-up."""
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    """Load, then time the endpoint and the baselines."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = fresh_config("results")
    svc = prepare(config)
    store.create(svc.db, {**AB, "guardrails": []})  # guardrails would add a pass per guardrail metric
    store.move(svc.db, svc.experiment_cache, AB["key"], "start", svc.config.max_served_versions)
    load(svc, AB["key"], args.users)
    from service.http.app import create_app

    client = create_app(config).test_client()
    headers = {"Authorization": f"Bearer {keys(svc)['analyst']}"}

    def endpoint() -> None:
        resp = client.get(f"/v1/experiments/{AB['key']}/results?metric=spend", headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)

    def revenue() -> None:
        resp = client.get(f"/v1/experiments/{AB['key']}/results?metric=revenue&cuped=true&sequential=true", headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.get_json()["test"] == "welch_t_cuped_sequential"

    raw = timed(lambda: svc.db.fetch(RAW, ("spend", AB["key"])), args.repeat)
    raw_revenue = timed(lambda: svc.db.fetch(RAW_REVENUE, (AB["key"],)), args.repeat)
    api_revenue = timed(revenue, args.repeat)
    totals = timed(lambda: [svc.db.fetch(TOTALS[0], (AB["key"],)), svc.db.fetch(TOTALS[1], (AB["key"], "spend"))], args.repeat)
    api = timed(endpoint, args.repeat)
    print(f"database: {svc.db.dialect}; {args.users:,} exposed users, {args.users:,} outcomes; median of {args.repeat}")
    print(f"plain SQL over exposures + outcomes    {raw * 1000:9.1f} ms")
    print(f"plain SQL over maintained totals       {totals * 1000:9.1f} ms")
    print(f"GET /results?metric=spend              {api * 1000:9.1f} ms   {api / raw:.2f}x the raw query, {api / totals:.2f}x the totals queries")
    print(f"plain SQL, revenue from events         {raw_revenue * 1000:9.1f} ms")
    print(f"GET /results?metric=revenue, CUPED and sequential on: {api_revenue * 1000:9.1f} ms   {api_revenue / raw_revenue:.2f}x the raw query (aim: at most 2x)")
    summary(results_reported=api / raw, results_cuped_sequential=api_revenue / raw_revenue)


if __name__ == "__main__":
    main()
