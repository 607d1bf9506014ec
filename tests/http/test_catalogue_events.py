"""Catalogue upserts and idempotent event ingestion."""
from __future__ import annotations

import threading

from sqlalchemy import func, select, text

from recommender.matrix import EVENT_TYPES
from service.store.tables import EventRow
from service.store import event_log
from tests.helpers import get_ok, post_ok, train


def test_items_upsert_and_partial_updates_keep_other_fields(client, auth):
    h = auth("storefront")
    body = {"items": [{"item_id": "sku-1", "title": "Dune", "category": "books", "attributes": {"price": 9.5}}]}
    assert post_ok(client, "/v1/items", body, h) == {"upserted": 1}
    item = get_ok(client, "/v1/items/sku-1", h)
    assert item["title"] == "Dune" and item["available"] is True and item["attributes"] == {"price": 9.5}
    assert post_ok(client, "/v1/items", {"items": [{"item_id": "sku-1", "available": False}]}, h) == {"upserted": 1}
    item = get_ok(client, "/v1/items/sku-1", h)
    assert item["available"] is False and item["title"] == "Dune" and item["category"] == "books"
    # A client that writes every field of its record sends null for what it does not know: that keeps
    # the stored value, so a recalled item stays out of every answer.
    nulls = {"item_id": "sku-1", "title": "Dune (2nd ed.)", "category": None, "available": None, "attributes": None}
    assert post_ok(client, "/v1/items", {"items": [nulls]}, h) == {"upserted": 1}
    item = get_ok(client, "/v1/items/sku-1", h)
    assert (item["title"], item["category"], item["available"], item["attributes"]) == ("Dune (2nd ed.)", "books", False, {"price": 9.5})
    assert "sku-1" not in [i["item_id"] for i in get_ok(client, "/v1/items/popular?n=100", h)["items"]]
    # "" clears a title or a category, {} the attributes.
    assert post_ok(client, "/v1/items", {"items": [{"item_id": "sku-1", "category": "", "title": "", "attributes": {}}]}, h) == {"upserted": 1}
    item = get_ok(client, "/v1/items/sku-1", h)
    assert (item["title"], item["category"], item["attributes"], item["available"]) == (None, None, {}, False)


def test_only_a_change_that_serving_reads_makes_workers_reread_the_catalogue(client, auth, db):
    """Every worker rereads every item when the catalogue's revision moves: a sync of unchanged items must not move it."""
    from service.store.state import shared_state

    shop = auth("storefront")
    revision = lambda: shared_state(db).catalogue_revision  # noqa: E731
    item = {"item_id": "sku-1", "title": "Gloves", "category": "garden"}
    post_ok(client, "/v1/items", {"items": [item]}, shop)
    before = revision()
    for unchanged in ({**item}, {"item_id": "sku-1", "title": "Garden gloves"}, {"item_id": "sku-1", "category": None}, {"item_id": "sku-1", "available": True}):
        post_ok(client, "/v1/items", {"items": [unchanged]}, shop)
        assert revision() == before, unchanged
    for change in ({"item_id": "sku-1", "available": False}, {"item_id": "sku-1", "category": "tools"}, {"item_id": "sku-1", "category": ""}, {"item_id": "sku-2"}):
        post_ok(client, "/v1/items", {"items": [change]}, shop)
        assert revision() == before + 1, change
        before += 1


def test_the_last_entry_for_an_item_in_a_batch_wins(client, auth):
    h = auth("storefront")
    body = {"items": [{"item_id": "x", "title": "first"}, {"item_id": "x", "title": "second"}]}
    assert post_ok(client, "/v1/items", body, h) == {"upserted": 1}
    assert get_ok(client, "/v1/items/x", h)["title"] == "second"
    # As if sent one by one: a later entry's null keeps what an earlier one in the batch set (a recall stays recalled).
    recall = {"items": [{"item_id": "x", "available": False, "category": "toys"}, {"item_id": "x", "available": None, "category": None, "title": "t"}]}
    post_ok(client, "/v1/items", recall, h)
    assert {k: get_ok(client, "/v1/items/x", h)[k] for k in ("available", "category", "title")} == {"available": False, "category": "toys", "title": "t"}


def events(ids, user="u1"):
    return {"events": [{"event_id": f"e-{i}", "user_id": user, "item_id": f"sku-{i % 7}", "type": "purchase", "value": 12.5, "timestamp": "2026-11-22T10:00:00+01:00"} for i in ids]}


def stored(db):
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(EventRow))


def assert_training_log_matches_events(db):
    """The training log holds every stored event exactly once, and nothing else."""
    logged = event_log.read(db).events
    from_log = sorted(zip(logged.user_ids[logged.users], logged.item_ids[logged.items], (EVENT_TYPES[t] for t in logged.types), logged.ts))
    with db.read() as session:
        from_table = sorted(session.execute(select(EventRow.user_id, EventRow.item_id, EventRow.type, EventRow.ts)).tuples().all())
    assert from_log == from_table


def test_replayed_events_are_counted_as_duplicates_and_stored_once(client, auth, db):
    h = auth("storefront")
    assert post_ok(client, "/v1/events", events(range(100)), h) == {"accepted": 100, "duplicates": 0}
    assert post_ok(client, "/v1/events", events(range(50, 150)), h) == {"accepted": 50, "duplicates": 50}
    assert stored(db) == 150
    assert_training_log_matches_events(db)


def test_duplicates_inside_one_batch_are_stored_once(client, auth, db):
    body = events([1, 2, 2, 3, 3, 3])
    assert post_ok(client, "/v1/events", body, auth("storefront")) == {"accepted": 3, "duplicates": 3}
    assert stored(db) == 3


def test_timestamps_keep_their_zone_and_omitted_means_now(client, auth, db):
    import time

    h = auth("storefront")
    post_ok(client, "/v1/events", events([1]), h)
    post_ok(client, "/v1/events", {"events": [{"event_id": "now", "user_id": "u", "item_id": "i", "type": "view"}]}, h)
    with db.read() as session:
        ts = dict(session.execute(select(EventRow.event_id, EventRow.ts)).all())
    assert ts["e-1"] == 1795338000.0  # 2026-11-22T09:00:00Z
    assert abs(ts["now"] - time.time()) < 60


def test_the_same_batch_from_two_clients_at_once_is_counted_exactly(app, auth, db):
    h = auth("storefront")
    body = events(range(3000))
    # Half the clients send it backwards: overlapping batches in another order must not deadlock.
    backwards = {"events": list(reversed(body["events"]))}
    answers = []

    def send(payload):
        answers.append(app.test_client().post("/v1/events", json=payload, headers=h).get_json())

    threads = [threading.Thread(target=send, args=(backwards if k % 2 else body,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a["accepted"] for a in answers) == 3000
    assert sum(a["duplicates"] for a in answers) == 3 * 3000
    assert stored(db) == 3000
    assert_training_log_matches_events(db)


def test_events_may_name_items_not_in_the_catalogue(client, auth):
    body = {"events": [{"event_id": "e", "user_id": "u", "item_id": "unknown-sku", "type": "click"}]}
    assert post_ok(client, "/v1/events", body, auth("storefront")) == {"accepted": 1, "duplicates": 0}


def test_training_merges_a_log_of_single_event_batches_and_loses_nothing(client, auth, db):
    h = auth("storefront")
    for k in range(40):
        one = {"event_id": f"one-{k}", "user_id": f"u{k % 8}", "item_id": f"sku-{k % 5}", "type": "purchase"}
        assert post_ok(client, "/v1/events", {"events": [one]}, h)["accepted"] == 1
    assert len(event_log.read(db).segment_ids) == 40
    first = train(client, auth("editor"), {"params": {"factors": 4, "iterations": 2}, "evaluation": {"evaluate": False}})
    assert first["status"] == "ready" and first["data"]["events"] == 40
    assert len(event_log.read(db).segment_ids) == 1
    assert_training_log_matches_events(db)
    post_ok(client, "/v1/events", events([1, 2]), h)
    second = train(client, auth("editor"), {"params": {"factors": 4, "iterations": 2}, "evaluation": {"evaluate": False}})
    assert second["data"]["events"] == 42
    assert_training_log_matches_events(db)


def test_sixteen_threads_of_overlapping_and_repeated_batches_store_each_event_once(app, auth, db):
    """PostgreSQL copies batches into a staging table; overlaps, repeats and any order must still count exactly."""
    import random

    h = auth("storefront")
    rng = random.Random(16)
    batches = []
    for k in range(16):
        start = rng.randrange(0, 4000)
        ids = list(range(start, start + 1500)) + [rng.randrange(0, 6000) for _ in range(200)]  # a run plus strays, some repeated
        rng.shuffle(ids)
        batches.append(events(ids, user=f"u{k % 5}"))
    answers: list[dict] = []
    errors: list[BaseException] = []

    def send(payload):
        try:
            answers.append(app.test_client().post("/v1/events", json=payload, headers=h).get_json())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    distinct = {e["event_id"] for b in batches for e in b["events"]}
    assert sum(a["accepted"] for a in answers) == len(distinct) == stored(db)
    assert sum(a["accepted"] + a["duplicates"] for a in answers) == sum(len(b["events"]) for b in batches)
    assert_training_log_matches_events(db)
    with db.read() as session:
        purchases = session.execute(text("SELECT SUM(purchases) FROM user_activity")).scalar()
    assert purchases == len(distinct)  # every accepted event is a purchase, counted once in its user's activity
