"""A worker's view of the catalogue, read whole or from the view it holds: always the same."""
from __future__ import annotations

import numpy as np

from service.store.catalogue import catalogue_view, upsert_items
from service.store.state import shared_state


def test_a_view_read_from_the_one_held_equals_one_read_whole_after_every_change(db):
    model_items = {f"i{k}": k for k in range(60)}  # what a model scores: some never in the catalogue
    upsert_items(db, [{"item_id": f"i{k}", "category": f"c{k % 3}"} for k in range(0, 80, 2)])
    rng = np.random.default_rng(3)
    held = None
    for _ in range(40):
        batch = []
        for k in rng.choice(80, size=int(rng.integers(1, 6)), replace=False).tolist():
            entry: dict = {"item_id": f"i{k}"}
            choice = rng.integers(4)
            if choice == 0:
                entry["available"] = bool(rng.integers(2))
            elif choice == 1:
                entry["category"] = ["", "c0", "c1", "c9"][int(rng.integers(4))]
            elif choice == 2:
                entry["title"] = f"t{rng.integers(100)}"  # changes nothing serving reads
            batch.append(entry)
        upsert_items(db, batch)
        revision = shared_state(db).catalogue_revision
        whole = catalogue_view(db, model_items, revision)
        held = catalogue_view(db, model_items, revision, previous=held) if held is None or held.revision != revision else held
        assert np.array_equal(held.available, whole.available)
        assert list(held.categories) == list(whole.categories)
