"""Catalogue items: upsert, lookup, and the availability view used when serving."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import numpy as np
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from service.store.database import Database
from service.store.sql import insert
from service.store.state import CATALOGUE_KEY, catalogue_stamps
from service.store.tables import AppStateRow, EventRow, ItemRow
ITEM_FIELDS = ("title", "category", "available", "attributes")


def upsert_items(db: Database, entries: list[dict[str, Any]]) -> int:
    """Insert or update items; fields an entry leaves out or sends as null keep their stored values.

    Null is "left out" because clients that write every field of their own record send null for
    what they do not know: an item recalled with `available: false` must not come back that way.
    An empty title or category clears it.
    """
    latest: dict[str, dict[str, Any]] = {}
    for entry in entries:  # the last entry for an id wins, as if sent one by one: its nulls keep, here too
        latest.setdefault(entry["item_id"], {}).update({k: v for k, v in entry.items() if v is not None})
    now = time.time()
    with db.write() as session:
        # Catalogue writers take turns on the catalogue's state row: then what is compared below is
        # what this transaction overwrites, also for an item that does not exist yet (FOR UPDATE
        # cannot lock a row that is not there), and writers never wait on each other's items.
        revision, value = _lock_catalogue(session)
        ids = sorted(latest)
        stored = {row.item_id: row for row in session.scalars(select(ItemRow).where(ItemRow.item_id.in_(ids))).all()}
        rows: list[dict[str, Any]] = []
        changed: list[int] = []
        for item_id in ids:
            old = stored.get(item_id)
            base = {f: getattr(old, f) for f in ITEM_FIELDS} if old else {"title": None, "category": None, "available": True, "attributes": {}}
            base.update({k: v for k, v in latest[item_id].items() if k in ITEM_FIELDS and v is not None})
            for text in ("title", "category"):  # "" is how a client clears one, null meaning "keep"
                if base.get(text) == "":
                    base[text] = None
            if old is None or (old.available, old.category) != (base["available"], base["category"]):
                changed.append(len(rows))
            rows.append({"item_id": item_id, **base, "updated_at": now, "changed_revision": old.changed_revision if old else 0})
        # Every worker refreshes its view of the catalogue when the revision moves: a sync that re-sends
        # items as they are, or changes only titles, must not move it. When it moves, the changed items
        # are stamped with the new revision, which is all a worker holding an older view needs to read.
        if changed:
            floor = catalogue_stamps(value, revision)
            new_revision = revision + 1
            # An earlier move that stamped nothing (a writer of an older version) bars patching across it.
            session.execute(
                update(AppStateRow).where(AppStateRow.key == CATALOGUE_KEY).values(revision=new_revision, value=f"{new_revision}:{revision if floor is None else floor}")
            )
            for i in changed:
                rows[i]["changed_revision"] = new_revision
        stmt = insert(session, ItemRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"], set_={f: getattr(stmt.excluded, f) for f in (*ITEM_FIELDS, "updated_at", "changed_revision")}
        )
        if rows:
            session.execute(stmt, rows)
    return len(rows)


def _lock_catalogue(session: Session) -> tuple[int, str]:
    """The catalogue's revision and value, its row locked to the end of the transaction (created at 0 if missing)."""
    session.execute(insert(session, AppStateRow).values(key=CATALOGUE_KEY, value="", revision=0).on_conflict_do_nothing(index_elements=["key"]))
    row = session.execute(select(AppStateRow.revision, AppStateRow.value).where(AppStateRow.key == CATALOGUE_KEY).with_for_update()).one()
    return int(row[0]), row[1] or ""


def get_item(db: Database, item_id: str) -> ItemRow | None:
    """One item, or None."""
    with db.read() as session:
        return session.get(ItemRow, item_id)


def stored_items(db: Database, item_ids: list[str]) -> set[str]:
    """Which of these items the catalogue holds."""
    with db.read() as session:
        return set(session.scalars(select(ItemRow.item_id).where(ItemRow.item_id.in_(item_ids))))


def item_seen(db: Database, item_id: str) -> tuple[bool, str | None]:
    """Whether the catalogue or any event names the item, and its category."""
    with db.read() as session:
        item = session.get(ItemRow, item_id)
        if item is not None:
            return True, item.category
        return session.scalar(select(EventRow.id).where(EventRow.item_id == item_id).limit(1)) is not None, None


def live_popular(db: Database, n: int, category: str | None, excluded: set[str]) -> list[tuple[str, float]]:
    """Distinct users per item straight from the events, for when no model is active."""
    users = func.count(func.distinct(EventRow.user_id))
    stmt = (
        select(EventRow.item_id, users.label("users"))
        .outerjoin(ItemRow, ItemRow.item_id == EventRow.item_id)
        .where(or_(ItemRow.available.is_(None), ItemRow.available.is_(True)))
        .group_by(EventRow.item_id)
        .order_by(users.desc(), EventRow.item_id)
        .limit(n + len(excluded))
    )
    if category is not None:
        stmt = stmt.where(ItemRow.category == category)
    with db.read() as session:
        rows = session.execute(stmt).all()
    return [(r[0], float(r[1])) for r in rows if r[0] not in excluded][:n]


# The category masks a worker keeps per catalogue view, the most recently asked: each costs a byte
# per item, and one not kept costs an integer comparison over the items (under 1 ms at a million).
MAX_CATEGORY_MASKS = 64


@dataclass(frozen=True)
class CatalogueView:
    """Availability and category of a model's items, aligned to its item indices.

    `codes` numbers each item's category by `category_codes` (-1: none), so that a category's mask
    is an integer comparison rather than one of Python strings.
    """
    revision: int
    available: np.ndarray
    codes: np.ndarray
    category_codes: Mapping[str, int]
    _in_category: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def _nothing(self) -> np.ndarray:
        nothing = np.zeros(len(self.available), dtype=bool)
        nothing.setflags(write=False)
        return nothing

    def mask(self, category: str | None) -> np.ndarray:
        """Items that may be recommended, optionally in one category only; shared, so never to be changed."""
        if category is None:
            return self.available
        # A category is a request's to name: one no item has gets the shared empty mask, and only the
        # most recent masks are kept, or a client naming new categories would grow every worker's memory.
        code = self.category_codes.get(category)
        if code is None:
            return self._nothing
        with self._lock:
            mask = self._in_category.get(category)
            if mask is not None:
                self._in_category.move_to_end(category)
                return mask
        mask = self.available & (self.codes == code)
        mask.setflags(write=False)
        with self._lock:
            self._in_category[category] = mask
            while len(self._in_category) > MAX_CATEGORY_MASKS:
                self._in_category.popitem(last=False)
        return mask

    def allowed(self, category: str | None) -> np.ndarray:
        """A fresh copy of `mask` that the caller may change."""
        return self.mask(category).copy()


def catalogue_view(db: Database, position: Mapping[str, int], revision: int, previous: CatalogueView | None = None) -> CatalogueView:
    """Items the catalogue marks unavailable are off; items it has never heard of stay on.

    `position` maps the model's item ids to their places. From `previous`, a view of the same items
    at an older revision, only the items changed since are read (an item's `changed_revision`).
    """
    if previous is not None and previous.revision <= revision:
        available, codes, category_codes = previous.available.copy(), previous.codes.copy(), dict(previous.category_codes)
        query = select(ItemRow.item_id, ItemRow.available, ItemRow.category).where(ItemRow.changed_revision > previous.revision)
    else:
        available = np.ones(len(position), dtype=bool)
        codes = np.full(len(position), -1, dtype=np.int32)
        category_codes = {}
        query = select(ItemRow.item_id, ItemRow.available, ItemRow.category)
    with db.read() as session:
        for item_id, is_available, category in session.execute(query):
            i = position.get(item_id)
            if i is not None:
                available[i] = bool(is_available)
                codes[i] = -1 if category is None else category_codes.setdefault(category, len(category_codes))
    available.setflags(write=False)  # shared by every request of the worker: a write must fail, not leak
    return CatalogueView(revision, available, codes, category_codes)
