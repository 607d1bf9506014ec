"""Catalogue items and behaviour events from storefronts."""
from __future__ import annotations

from typing import Any, Sequence

from service.errors import NotFound
from service.store import catalogue as store
from service.store.database import Database
from service.store.events import insert_events
from service.timestamps import iso


def upsert_items(db: Database, entries: list[dict[str, Any]]) -> int:
    """Insert or update items; fields an entry leaves out keep their stored values."""
    return store.upsert_items(db, entries)


def get_item(db: Database, item_id: str) -> dict[str, Any]:
    """One item as the API shows it; NotFound if the catalogue does not have it."""
    row = store.get_item(db, item_id)
    if row is None:
        raise NotFound("item", item_id)
    return {
        "item_id": row.item_id,
        "title": row.title,
        "category": row.category,
        "available": row.available,
        "attributes": row.attributes or {},
        "updated_at": iso(row.updated_at) or "",
    }


def record_events(db: Database, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Store a batch in one transaction; answer (accepted, duplicates)."""
    return insert_events(db, events)
