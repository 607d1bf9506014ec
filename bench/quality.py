"""Recommendation quality on MovieLens latest-small through the service, per algorithm, default and tuned.

The protocol of tests/http/test_movielens_quality.py: every rating is a purchase, a seeded 80/20
split of the ratings (numpy seed 2026), the 80 % sent through POST /v1/events at the times they were
rated (all moved by one constant so that the earliest, in 1996, falls in 2000, the first year the API
accepts; only the gaps between them matter, to EASE's visits), each model trained
through POST /v1/models and every test user's top 10 read from GET /v1/users/{id}/recommendations.
Tuning searches on a holdout of the 80 % only, so the 20 % stays unseen until it is scored.

    .venv/bin/python bench/quality.py [--trials 30] [--ease-trials 15] [--only als,ease]

"vs default ALS" is the relative lift in precision@10 with the standard error of the mean
per-user difference (the same 609 users score every model), divided by ALS's precision.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config, keys  # noqa: E402
from recommender.evaluation import ranking_metrics  # noqa: E402
from service.http.app import create_app  # noqa: E402
from service.store.migrate import upgrade  # noqa: E402
from tests.datasets import MOVIELENS  # noqa: E402
from tests.helpers import iso  # noqa: E402

EARLIEST_ACCEPTED = 946_684_800.0  # 2000-01-01T00:00:00Z



def runs(trials: int, ease_trials: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, POST /v1/models body) of every configuration measured."""
    return [
        ("popularity", {"algorithm": "popularity"}),
        ("als (default)", {"algorithm": "als"}),
        (f"als (tuned, {trials} trials)", {"algorithm": "als", "tune": {"trials": trials, "metric": "precision_at_10", "seed": 1}}),
        ("ease (default)", {"algorithm": "ease"}),
        ("ease (no visits)", {"algorithm": "ease", "params": {"session_weight": 0.0}}),
        (f"ease (tuned, {ease_trials} trials)", {"algorithm": "ease", "tune": {"trials": ease_trials, "metric": "precision_at_10", "seed": 1}}),
    ]


def load_split() -> tuple[list[tuple[str, str, float]], dict[str, set[str]]]:
    """Training (user, item, epoch seconds) ratings and each test user's held-out items."""
    with open(MOVIELENS / "ratings.csv") as f:
        ratings = [(f"u{r['userId']}", f"m{r['movieId']}", float(r["timestamp"])) for r in csv.DictReader(f)]
    shift = max(0.0, EARLIEST_ACCEPTED - min(t for _, _, t in ratings))
    in_test = np.random.default_rng(2026).random(len(ratings)) < 0.2
    relevant: dict[str, set[str]] = {}
    for (user, item, _), test in zip(ratings, in_test):
        if test:
            relevant.setdefault(user, set()).add(item)
    return [(u, i, t + shift) for (u, i, t), test in zip(ratings, in_test) if not test], relevant


def scored(client: Any, headers: dict[str, str], relevant: dict[str, set[str]]) -> tuple[float, float, np.ndarray]:
    """Precision and NDCG at 10 of what the service answers every test user, and each user's precision (sorted by user)."""
    users = sorted(relevant)
    served = [[i["item_id"] for i in client.get(f"/v1/users/{u}/recommendations?n=10", headers=headers).get_json()["items"]] for u in users]
    codes: dict[str, int] = {}
    recs = np.array([[codes.setdefault(i, len(codes)) for i in row] + [-1] * (10 - len(row)) for row in served])
    rel = [np.array([codes.setdefault(i, len(codes)) for i in relevant[u]]) for u in users]
    metrics = ranking_metrics(recs, rel, 10)
    per_user = np.array([len(set(row[:10]) & relevant[u]) / 10 for u, row in zip(users, served)])
    assert metrics.precision_at_10 is not None and metrics.ndcg_at_10 is not None, "the held-out month names no user"
    return metrics.precision_at_10, metrics.ndcg_at_10, per_user


def paired_se(per_user: np.ndarray, baseline: np.ndarray) -> float:
    """Standard error of the mean per-user difference in precision@10: the noise in a lift over the baseline."""
    diff = per_user - baseline
    return float(diff.std(ddof=1) / np.sqrt(len(diff)))


def main() -> None:
    """Load the training ratings once, then train, serve and score each configuration in turn."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="trials of the tuned ALS")
    parser.add_argument("--ease-trials", type=int, default=15, help="trials of each tuned EASE (each fit inverts an items x items matrix)")
    parser.add_argument("--only", default="", help="comma-separated algorithms to run (popularity and default ALS always run)")
    args = parser.parse_args()
    if not (MOVIELENS / "ratings.csv").exists():
        sys.exit(f"needs MovieLens latest-small: set MOVIELENS_DIR to the folder holding ratings.csv (see the README's Data); {MOVIELENS / 'ratings.csv'} is not there")
    # scipy's inverse holds the GIL, so the run's heartbeat thread waits through each EASE fit; on a
    # loaded shared machine one fit can outlast the default 30 s and the run is reported failed.
    config = dataclasses.replace(fresh_config("quality"), training_stale_seconds=600.0)
    app = create_app(config)
    svc = app.extensions["stickyloop"]
    upgrade(svc.db)
    key = keys(svc)
    storefront, editor = ({"Authorization": f"Bearer {key[r]}"} for r in ("storefront", "editor"))
    client = app.test_client()
    train_pairs, relevant = load_split()
    for start in range(0, len(train_pairs), 10_000):
        batch = [
            {"event_id": f"r{start + k}", "user_id": u, "item_id": i, "type": "purchase", "timestamp": iso(t)}
            for k, (u, i, t) in enumerate(train_pairs[start : start + 10_000])
        ]
        assert client.post("/v1/events", json={"events": batch}, headers=storefront).status_code == 200
    print(f"loaded {len(train_pairs):,} training ratings; {len(relevant):,} users to score", file=sys.stderr)

    only = {a for a in args.only.split(",") if a}
    rows = []
    for label, body in runs(args.trials, args.ease_trials):
        if only and body["algorithm"] not in only and label not in ("popularity", "als (default)"):
            continue
        started = time.perf_counter()
        version = client.post("/v1/models", json=body, headers=editor).get_json()["version"]
        while (record := client.get(f"/v1/models/{version}", headers=editor).get_json())["status"] == "training":
            time.sleep(0.5)
        if record["status"] != "ready":
            sys.exit(f"{label}: {record['status']}: {record['error']}")
        precision, ndcg, per_user = scored(client, storefront, relevant)
        rows.append((label, record["params"], precision, per_user, ndcg, time.perf_counter() - started))
        print(f"{label}: precision@10 {precision:.4f}, ndcg@10 {ndcg:.4f} in {rows[-1][5]:.0f} s with {json.dumps(record['params'])}", file=sys.stderr)

    baseline, baseline_users = next((r[2], r[3]) for r in rows if r[0] == "als (default)")
    print("| model | params | precision@10 | vs default ALS (± paired s.e.) | ndcg@10 | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, params, precision, per_user, ndcg, seconds in rows:
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(params.items())) or "defaults"
        lift = f"{precision / baseline - 1:+.1%} ± {paired_se(per_user, baseline_users) / baseline:.1%}"
        print(f"| {label} | {shown} | {precision:.4f} | {lift} | {ndcg:.4f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
