"""What a catalogue write costs serving: a worker's view of the catalogue, read whole or from the view it holds.

Every worker keeps the availability and category of each item its models score, and refreshes
them when the catalogue's revision moves. This loads `--items` catalogue items (a model scoring
`--model-items` of them), then changes one item's availability at a time and times the worker's
refresh from the view it holds against reading the catalogue whole, in the same run; it also
checks that re-sending an item unchanged, or with a new title only, leaves the revision alone.

    .venv/bin/python bench/catalogue_sync.py [--items 200000] [--model-items 25000]
    BENCH_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/catalogue_sync.py
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from bench.common import fresh_config, prepare, summary  # noqa: E402
from service.store.catalogue import catalogue_view, upsert_items  # noqa: E402
from service.store.state import shared_state  # noqa: E402

ROUNDS = 7


def main() -> None:
    """Load the catalogue, then time refreshes after one-item changes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--model-items", type=int, default=25_000)
    args = parser.parse_args()
    db = prepare(fresh_config("catalogue")).db
    for start in range(0, args.items, 10_000):
        upsert_items(db, [{"item_id": f"i{k}", "category": f"c{k % 50}"} for k in range(start, min(start + 10_000, args.items))])
    if not db.is_sqlite:
        with db.write() as session:  # as autovacuum would have by now on a live server
            session.execute(text("ANALYZE items"))
    position = {f"i{k}": k for k in range(args.model_items)}
    whole_ms: list[float] = []
    held_ms: list[float] = []
    view = catalogue_view(db, position, shared_state(db).catalogue_revision)
    for j in range(ROUNDS):
        upsert_items(db, [{"item_id": f"i{j}", "available": bool(j % 2)}])
        revision = shared_state(db).catalogue_revision
        began = time.perf_counter()
        catalogue_view(db, position, revision)
        whole_ms.append((time.perf_counter() - began) * 1e3)
        began = time.perf_counter()
        view = catalogue_view(db, position, revision, previous=view)
        held_ms.append((time.perf_counter() - began) * 1e3)
    before = shared_state(db).catalogue_revision
    upsert_items(db, [{"item_id": "i1", "title": "a new title"}, {"item_id": "i2"}])
    moved = shared_state(db).catalogue_revision != before
    whole, held = statistics.median(whole_ms), statistics.median(held_ms)
    print(f"database: {db.dialect}; {args.items:,} catalogue items, a model scoring {args.model_items:,}; median of {ROUNDS} one-item changes")
    print(f"refresh, reading the catalogue whole      {whole:8.2f} ms")
    print(f"refresh, from the view held               {held:8.2f} ms   ratio {held / whole:.4f}x")
    print(f"a title-only or unchanged write moved the revision: {'yes' if moved else 'no'}")
    summary(catalogue_refresh_ratio=held / whole)


if __name__ == "__main__":
    main()
