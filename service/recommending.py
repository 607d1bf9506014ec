"""Answering recommendation requests from the active model, the catalogue and the user's events."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, or_, select

from service.api import KeyCheck
from service.db import Database
from service.models import Event, Item
from service.serving import ModelCache, read_shared_state, read_state_and_user_events


@dataclass(frozen=True)
class Answer:
    """A ranked list and how it was made."""

    strategy: str
    model_version: str | None
    items: list[tuple[str, float]]


def _block(index_of: dict[str, int], allowed: np.ndarray, item_ids: set[str]) -> None:
    for item_id in item_ids:
        i = index_of.get(item_id)
        if i is not None:
            allowed[i] = False


def live_popular(db: Database, n: int, category: str | None, excluded: set[str]) -> list[tuple[str, float]]:
    """Distinct users per item straight from the events, for when no model is active."""
    users = func.count(func.distinct(Event.user_id))
    stmt = (
        select(Event.item_id, users.label("users"))
        .outerjoin(Item, Item.item_id == Event.item_id)
        .where(or_(Item.available.is_(None), Item.available.is_(True)))
        .group_by(Event.item_id)
        .order_by(users.desc(), Event.item_id)
        .limit(n + len(excluded))
    )
    if category is not None:
        stmt = stmt.where(Item.category == category)
    with db.read() as session:
        rows = session.execute(stmt).all()
    return [(r[0], float(r[1])) for r in rows if r[0] not in excluded][:n]


def for_user(
    db: Database, cache: ModelCache, user_id: str, n: int, category: str | None, excluded: set[str], api_key: KeyCheck | None = None
) -> Answer:
    """Personalised when the model knows the user or they have events; popular otherwise; `api_key` rides on the first read."""
    # A user the model already knows is scored from learned factors, so only their
    # purchases (to leave out) are read. Which model is active is only known from
    # the same read, so guess this worker's latest and read again if it changed.
    guess = cache.latest
    purchases_only = guess is not None and not guess.needs_events(user_id)
    state, events = read_state_and_user_events(db, user_id, purchases_only, api_key)
    if purchases_only and guess is not None and state.active_version != guess.version:
        state, events = read_state_and_user_events(db, user_id)
    blocked = excluded | {item for item, kind, _ in events if kind == "purchase"}
    if state.active_version is None:
        return Answer("popular", None, live_popular(db, n, category, blocked))
    index = cache.index(state.active_version)
    view = cache.view(index, state.catalogue_revision)
    remembered = index.top_for_known_user(user_id, view.mask(category), blocked, n)
    if remembered is not None:
        return Answer("personalized", index.version, remembered)
    allowed = view.allowed(category)
    _block(index.item_index, allowed, blocked)
    strategy, scores = index.user_scores(user_id, events, time.time())
    return Answer(strategy, index.version, index.top(scores, allowed, n))


def popular(db: Database, cache: ModelCache, n: int, category: str | None, api_key: KeyCheck | None = None) -> Answer:
    """The most popular available items; `api_key` rides on the first read."""
    state = read_shared_state(db, api_key)
    if state.active_version is None:
        return Answer("popular", None, live_popular(db, n, category, set()))
    index = cache.index(state.active_version)
    allowed = cache.view(index, state.catalogue_revision).allowed(category)
    return Answer("popular", index.version, index.top(index.popularity, allowed, n))


def similar(db: Database, cache: ModelCache, item_id: str, n: int, api_key: KeyCheck | None = None) -> Answer | None:
    """Items like `item_id`; popular in its category when the model does not know it; None if nobody does.

    `api_key` rides on the first read.
    """
    state = read_shared_state(db, api_key)
    with db.read() as session:
        item = session.get(Item, item_id)
        seen = item is not None or session.scalar(select(Event.id).where(Event.item_id == item_id).limit(1)) is not None
    if not seen:
        return None
    category = item.category if item is not None else None
    if state.active_version is None:
        return Answer("popular", None, live_popular(db, n, category, {item_id}))
    index = cache.index(state.active_version)
    view = cache.view(index, state.catalogue_revision)
    scores = index.item_scores(item_id)
    if scores is None:
        allowed = view.allowed(category)
        _block(index.item_index, allowed, {item_id})
        return Answer("popular", index.version, index.top(index.popularity, allowed, n))
    return Answer("similar", index.version, index.top(scores, view.allowed(None), n))


__all__ = ["Answer", "for_user", "popular", "similar", "live_popular"]
