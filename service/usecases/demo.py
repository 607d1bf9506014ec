"""The demo data that `make run` loads: a synthetic catalogue, events and experiments."""
from __future__ import annotations

import math
import time
from typing import Iterator

from recommender.synthetic import generate
from service.usecases.context import Services
from service.store.catalogue import upsert_items
from service.store.events import insert_events

CATEGORIES = ["books", "music", "games", "garden", "kitchen", "toys", "sports", "beauty"]
BATCH = 10_000


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
    for start in range(0, len(items), BATCH):
        upsert_items(svc.db, items[start : start + BATCH])
    yield f"catalogue: {len(items)} items in {len(CATEGORIES)} categories"
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
    yield f"events: {accepted} stored, {duplicates} already there"
