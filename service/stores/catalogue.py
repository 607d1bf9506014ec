"""Catalogue items: upsert, lookup, and the availability view used when serving."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from sqlalchemy import select

from service.db import Database
from service.models import Item
from service.stores.sql import bump_revision, insert

CATALOGUE_KEY = "catalogue"
ITEM_FIELDS = ("title", "category", "available", "attributes")


def upsert_items(db: Database, entries: list[dict[str, Any]]) -> int:
    """Insert or update items; fields an entry leaves out keep their stored values."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in entries:  # the last entry for an id wins, as if sent one by one
        latest.setdefault(entry["item_id"], {}).update(entry)
    now = time.time()
    with db.write() as session:
        found = session.scalars(select(Item).where(Item.item_id.in_(list(latest)))).all()
        stored = {row.item_id: row for row in found}
        rows = []
        for item_id, entry in latest.items():
            old = stored.get(item_id)
            base = {f: getattr(old, f) for f in ITEM_FIELDS} if old else {"title": None, "category": None, "available": True, "attributes": {}}
            base.update({k: v for k, v in entry.items() if k in ITEM_FIELDS})
            rows.append({"item_id": item_id, **base, "updated_at": now})
        stmt = insert(session, Item)
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"], set_={f: getattr(stmt.excluded, f) for f in (*ITEM_FIELDS, "updated_at")}
        )
        if rows:
            session.execute(stmt, rows)
        bump_revision(session, CATALOGUE_KEY)
    return len(rows)


def get_item(db: Database, item_id: str) -> Item | None:
    """One item, or None."""
    with db.read() as session:
        return session.get(Item, item_id)


@dataclass(frozen=True)
class CatalogueView:
    """Availability and category of a model's items, aligned to its item indices."""

    revision: int
    available: np.ndarray
    categories: np.ndarray
    _in_category: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def mask(self, category: str | None) -> np.ndarray:
        """Items that may be recommended, optionally in one category only; shared, so never to be changed."""
        if category is None:
            return self.available
        mask = self._in_category.get(category)
        if mask is None:
            # Comparing an object array costs far more than a lookup; a view is immutable, so keep it.
            mask = self._in_category[category] = self.available & (self.categories == category)
        return mask

    def allowed(self, category: str | None) -> np.ndarray:
        """A fresh copy of `mask` that the caller may change."""
        return self.mask(category).copy()


def catalogue_view(db: Database, item_ids: Iterable[str], revision: int) -> CatalogueView:
    """Items the catalogue marks unavailable are off; items it has never heard of stay on."""
    item_ids = list(item_ids)
    position = {item: i for i, item in enumerate(item_ids)}
    available = np.ones(len(item_ids), dtype=bool)
    categories = np.full(len(item_ids), None, dtype=object)
    with db.read() as session:
        for item_id, is_available, category in session.execute(select(Item.item_id, Item.available, Item.category)):
            i = position.get(item_id)
            if i is not None:
                available[i] = bool(is_available)
                categories[i] = category
    return CatalogueView(revision, available, categories)
