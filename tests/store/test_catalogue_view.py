"""A worker's view of the catalogue, read whole or brought up to date from the one it holds: always the same."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from sqlalchemy import text

from service.store.catalogue import catalogue_view, upsert_items
from service.store.state import shared_state
from service.usecases.serving import ModelCache

MODEL_ITEMS = {f"i{k}": k for k in range(60)}  # what a model scores: some never in the catalogue
INDEX = SimpleNamespace(version="v1", item_index=MODEL_ITEMS)


def _served(cache: ModelCache, db):  # noqa: ANN001, ANN202
    state = shared_state(db)
    return cache.view(INDEX, state.catalogue_revision, state.catalogue_patchable_from), catalogue_view(db, MODEL_ITEMS, state.catalogue_revision)


def _same(held, whole) -> None:  # noqa: ANN001
    assert np.array_equal(held.available, whole.available)
    # Codes are numbered in reading order, so compare the items each category name holds, and those with none.
    def members(view, category):  # noqa: ANN001, ANN202
        return view.codes == view.category_codes.get(category, -2)

    for category in {*held.category_codes, *whole.category_codes}:
        assert np.array_equal(members(held, category), members(whole, category)), category
    assert np.array_equal(held.codes < 0, whole.codes < 0)


def test_a_view_brought_up_to_date_equals_one_read_whole_after_every_change(db, tmp_path):
    cache = ModelCache(db, tmp_path)
    upsert_items(db, [{"item_id": f"i{k}", "category": f"c{k % 3}"} for k in range(0, 80, 2)])
    rng = np.random.default_rng(3)
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
        _same(*_served(cache, db))


def test_a_move_by_a_writer_that_stamps_nothing_is_never_patched_across(db, tmp_path):
    """During a host-by-host upgrade, a worker of the version before stamps no items: nothing it changed may be missed."""
    cache = ModelCache(db, tmp_path)
    upsert_items(db, [{"item_id": f"i{k}"} for k in range(10)])
    _same(*_served(cache, db))  # the worker holds a view
    with db.write() as session:  # what the version before did: the row changed, the revision moved, no stamp
        session.execute(text("UPDATE items SET available = :no WHERE item_id = 'i1'"), {"no": False})
        session.execute(text("UPDATE app_state SET revision = revision + 1 WHERE key = 'catalogue'"))
    upsert_items(db, [{"item_id": "i2", "available": False}])  # then this version's writer
    held, whole = _served(cache, db)
    _same(held, whole)
    assert not held.available[1] and not held.available[2]
    upsert_items(db, [{"item_id": "i3", "category": "c1"}])  # and later moves patch again
    _same(*_served(cache, db))


def test_concurrent_first_writes_of_one_item_keep_every_field_sent(db):
    """Null keeps: a title written alongside another writer's first `available: false` must not make the item available."""
    from concurrent.futures import ThreadPoolExecutor

    from service.store.catalogue import get_item

    entries = [{"item_id": f"new-{k}", "available": False} for k in range(30)] + [{"item_id": f"new-{k}", "title": "t"} for k in range(30)]
    np.random.default_rng(2).shuffle(entries)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda entry: upsert_items(db, [entry]), entries))
    for k in range(30):
        item = get_item(db, f"new-{k}")
        assert item is not None and item.available is False and item.title == "t", k


def test_categories_a_request_names_cannot_grow_a_views_memory(db, monkeypatch):
    from service.store import catalogue

    monkeypatch.setattr(catalogue, "MAX_CATEGORY_MASKS", 8)
    upsert_items(db, [{"item_id": f"i{k}", "category": f"c{k}", "available": k % 5 != 0} for k in range(0, 60)])
    view = catalogue_view(db, MODEL_ITEMS, shared_state(db).catalogue_revision)
    for j in range(1000):  # names no item has: one shared empty mask, nothing kept
        assert not view.mask(f"nosuch-{j}").any()
    assert view._in_category == {}
    for k in range(60):  # real ones: exact, and kept only up to the bound
        assert list(np.flatnonzero(view.mask(f"c{k}"))) == ([] if k % 5 == 0 else [k])
        assert len(view._in_category) <= 8
    # The most recently asked are kept: eight categories asked in turn are each computed once.
    first = {k: view.mask(f"c{k}") for k in range(8)}
    assert all(view.mask(f"c{k}") is first[k] for _ in range(3) for k in range(8))
    assert view.allowed("nosuch").flags.writeable  # a caller's copy may be changed
