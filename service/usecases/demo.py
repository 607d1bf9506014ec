"""The demo data that `make run` loads: a synthetic catalogue, events and experiments."""
from __future__ import annotations

import math
import time
from typing import Iterator

from recommender.synthetic import generate
from service.usecases.context import Services
from service.store.catalogue import stored_items, upsert_items
from service.store.events import insert_events

CATEGORIES = ["books", "music", "games", "garden", "kitchen", "toys", "sports", "beauty"]
BATCH = 10_000
# Customers who bought 5 to 8 weeks ago and not since: the audience of the win-back experiment.
LAPSED = 200


def load_demo(svc: Services, n_users: int, n_items: int, n_events: int) -> Iterator[str]:
    """Load everything, yielding a progress line per step; ids are fixed, so a rerun adds nothing."""
    data = generate(n_users, n_items, n_events, seed=7, n_categories=len(CATEGORIES), start=time.time() - 60 * 86_400, span_days=59)
    items = [
        {
            "item_id": f"sku-{i}",
            "title": f"{CATEGORIES[c].title()} item {i}",
            "category": CATEGORIES[c],
            "available": i % 50 != 0,
            "attributes": {"price": round(5 + (i * 37 % 200) / 2, 2)},
        }
        for i, c in enumerate(data.item_categories)
    ]
    added = 0
    for start in range(0, len(items), BATCH):
        # A rerun (make run does one each time) leaves what the API changed since: a recall, a new category.
        batch = items[start : start + BATCH]
        kept = stored_items(svc.db, [item["item_id"] for item in batch])
        added += upsert_items(svc.db, [item for item in batch if item["item_id"] not in kept]) if len(kept) < len(batch) else 0
    yield f"catalogue: {len(items)} items in {len(CATEGORIES)} categories ({added} new)"
    accepted = duplicates = 0
    for start in range(0, n_events, BATCH):
        stop = min(start + BATCH, n_events)
        rows = [
            {
                "event_id": f"demo-e-{k}",
                "user_id": f"user-{data.users[k]}",
                "item_id": f"sku-{data.items[k]}",
                "type": str(data.types[k]),
                "ts": float(data.timestamps[k]),
                "value": None if math.isnan(data.values[k]) else float(data.values[k]),
            }
            for k in range(start, stop)
        ]
        a, d = insert_events(svc.db, rows)
        accepted, duplicates = accepted + a, duplicates + d
    lapsed = _lapsed_events(n_users, n_items, time.time())
    a, d = insert_events(svc.db, lapsed)
    yield f"events: {accepted + a} stored, {duplicates + d} already there (including {LAPSED} lapsed customers)"


def _lapsed_events(n_users: int, n_items: int, now: float) -> list[dict[str, object]]:
    """One to three purchases each, 35 to 58 days ago, for users numbered after the synthetic ones."""
    events: list[dict[str, object]] = []
    for i in range(LAPSED):
        for j in range(1 + i % 3):
            ts = now - (35 + (i * 7 + j * 5) % 24) * 86_400
            item = (i * 31 + j * 17) % n_items
            events.append({"event_id": f"demo-lapsed-{i}-{j}", "user_id": f"user-{n_users + i}", "item_id": f"sku-{item}", "type": "purchase", "ts": ts, "value": 20.0 + (i % 5) * 10})
    return events
