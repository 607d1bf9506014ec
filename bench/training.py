"""End-to-end training time from stored events, as a ratio to a bare implicit fit on the same matrix.

    .venv/bin/python bench/training.py [--users 200000] [--items 50000] [--events 5000000] [--index]

--index builds the approximate nearest-neighbour index whatever the catalogue's size
(ANN_MIN_ITEMS=0), to measure what it adds to training.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import threadpool_limits  # noqa: E402

from bench.common import fresh_config, prepare, summary  # noqa: E402
from recommender.matrix import MatrixSettings, build_matrix  # noqa: E402
from recommender.models.als import ALS  # noqa: E402
from recommender.synthetic import generate  # noqa: E402
from service.store import event_log  # noqa: E402
from service.store.events import insert_events  # noqa: E402
from service.usecases.model_training import request_training  # noqa: E402
from service.usecases.training_run import run_training  # noqa: E402


def main() -> None:
    """Store synthetic events, train through the service pipeline, then fit bare implicit on the same matrix."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--index", action="store_true", help="build the approximate index too, whatever the catalogue's size")
    args = parser.parse_args()
    config = fresh_config("training")
    if args.index:
        config = dataclasses.replace(config, ann_min_items=0)
    svc = prepare(config)
    data = generate(args.users, args.items, args.events, seed=11, exponent=1.0)
    started = time.perf_counter()
    for start in range(0, args.events, 10_000):
        stop = min(start + 10_000, args.events)
        batch = [
            {"event_id": f"e{k}", "user_id": f"u{data.users[k]}", "item_id": f"i{data.items[k]}", "type": str(data.types[k]),
             "ts": float(data.timestamps[k]), "value": None if math.isnan(data.values[k]) else float(data.values[k])}
            for k in range(start, stop)
        ]
        insert_events(svc.db, batch)
    print(f"stored {args.events:,} events ({args.users:,} users x {args.items:,} items, power law) in {time.perf_counter() - started:.0f} s")

    for evaluate in (True, False):
        row = request_training(svc.db, config, "als", {}, activate=True, evaluation={"evaluate": evaluate})
        result = run_training(svc.db, config, row.version)
        assert result.status == "ready", result.error
        label = "with holdout evaluation" if evaluate else "evaluation off"
        print(f"service end to end ({label}): {result.training_seconds:.2f} s  stages {result.data['timings']}")
        if evaluate:
            end_to_end_eval = float(result.training_seconds or 0.0)
        else:
            end_to_end = float(result.training_seconds or 0.0)

    # The same matrix the service built, fitted by implicit alone with the same parameters.
    events = event_log.read(svc.db).events
    matrix = build_matrix(events, MatrixSettings(weights=config.event_weights), now=time.time())
    bare = ALS()._new_model()
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        bare.fit(matrix.confidence, show_progress=False)
    bare_seconds = time.perf_counter() - started
    print(f"bare implicit ALS fit on the same {matrix.shape[0]:,} x {matrix.shape[1]:,} matrix ({matrix.confidence.nnz:,} nonzeros): {bare_seconds:.2f} s")
    aim = "at most 1.5x with the index" if args.index else "at most 1.3x"
    print(f"ratio, evaluation off: {end_to_end / bare_seconds:.2f}x   with holdout evaluation: {end_to_end_eval / bare_seconds:.2f}x   (aim: {aim})")
    summary(training_ratio=end_to_end / bare_seconds, training_ratio_evaluated=end_to_end_eval / bare_seconds)


if __name__ == "__main__":
    main()
