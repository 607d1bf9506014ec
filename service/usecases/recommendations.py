"""Answering recommendation requests from the active model, the catalogue and the user's events."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from service.store import catalogue
from service.store.database import Database
from service.store.state import shared_state, state_and_user_events
from service.usecases.assignment import assign
from service.usecases.experiment_cache import ExperimentCache
from service.usecases.serving import ModelCache


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


@dataclass(frozen=True)
class Source:
    """Which recommender answers: the active model (no version), one version an experiment arm names, or popularity."""

    version: str | None = None
    popular: bool = False


ACTIVE = Source()


def for_user(db: Database, cache: ModelCache, user_id: str, n: int, category: str | None, excluded: set[str], source: Source = ACTIVE) -> Answer:
    """Personalised when the model knows the user or they have events; popular otherwise."""
    if source.version is not None:
        pinned = cache.index(source.version, pinned=True)
        state, events, purchased = state_and_user_events(db, user_id, purchases_only=source.popular or not pinned.needs_events(user_id))
    else:
        # A user the model already knows is scored from learned factors, so only the items
        # they bought (to leave out) are read. Which model is active is only known from
        # the same read, so guess this worker's latest and read again if it changed.
        guess = cache.latest
        purchases_only = guess is not None and not guess.needs_events(user_id) and not source.popular
        state, events, purchased = state_and_user_events(db, user_id, purchases_only)
        if purchases_only and guess is not None and state.active_version != guess.version:
            state, events, purchased = state_and_user_events(db, user_id)
    blocked = excluded | purchased
    version = source.version or state.active_version
    if version is None:
        return Answer("popular", None, catalogue.live_popular(db, n, category, blocked))
    index = cache.index(version, pinned=source.version is not None)
    view = cache.view(index, state.catalogue_revision, state.catalogue_patchable_from)
    if source.popular:
        allowed = view.allowed(category)
        _block(index.item_index, allowed, blocked)
        return Answer("popular", index.version, index.top_popular(allowed, n))
    remembered = index.top_for_known_user(user_id, view.mask(category), blocked, n)
    if remembered is not None:
        return Answer("personalized", index.version, remembered)
    allowed = view.allowed(category)
    _block(index.item_index, allowed, blocked)
    strategy, items = index.top_for_user(user_id, events, time.time(), allowed, n)
    return Answer(strategy, index.version, items)


def popular(db: Database, cache: ModelCache, n: int, category: str | None) -> Answer:
    """The most popular available items."""
    state = shared_state(db)
    if state.active_version is None:
        return Answer("popular", None, catalogue.live_popular(db, n, category, set()))
    index = cache.index(state.active_version)
    allowed = cache.view(index, state.catalogue_revision, state.catalogue_patchable_from).allowed(category)
    return Answer("popular", index.version, index.top_popular(allowed, n))


def similar(db: Database, cache: ModelCache, item_id: str, n: int) -> Answer | None:
    """Items like `item_id`; popular in its category when the model does not know it; None if nobody does."""
    state = shared_state(db)
    if state.active_version is not None:
        # An item the model knows was seen: one round trip, and no look for it in the events.
        index = cache.index(state.active_version)
        view = cache.view(index, state.catalogue_revision, state.catalogue_patchable_from)
        items = index.top_similar(item_id, view.mask(None), n, view.codes)
        if items is not None:
            return Answer("similar", index.version, items)
    seen, category = catalogue.item_seen(db, item_id)
    if not seen:
        return None
    if state.active_version is None:
        return Answer("popular", None, catalogue.live_popular(db, n, category, {item_id}))
    allowed = view.allowed(category)
    _block(index.item_index, allowed, {item_id})
    return Answer("popular", index.version, index.top_popular(allowed, n))


def recommender_of(payload: Mapping[str, Any] | None) -> Source:
    """The source an arm's payload names (`recommender: {model_version}` or `{algorithm: popularity}`); the active model otherwise."""
    spec = (payload or {}).get("recommender")
    if not isinstance(spec, dict):
        return ACTIVE
    version = str(spec["model_version"]) if spec.get("model_version") is not None else None
    return Source(version=version, popular=spec.get("algorithm") == "popularity")


def in_experiment(
    db: Database, cache: ModelCache, definitions: ExperimentCache, key: str, user_id: str, n: int, category: str | None, excluded: set[str], now: float,
    attributes: Mapping[str, Any] | None = None,
) -> tuple[Answer, str | None, str | None]:
    """Assign the user (recording the exposure; `attributes` for its targeting) and answer from their arm's
    recommender; (answer, arm or None, why not enrolled or None).

    A new user's arm has its model loaded before the exposure is written: a version this host cannot load
    (its artifact lost, say) then fails the request with no exposure stored for a user shown nothing,
    while users of the other arms, and users not enrolled, are answered as before.
    """
    def loadable(payload: Mapping[str, Any]) -> None:
        version = recommender_of(payload).version
        if version is not None:
            cache.index(version, pinned=True)

    assignment = assign(db, definitions, key, user_id, now, attributes, before_exposure=loadable)
    source = recommender_of(assignment.get("payload")) if assignment["enrolled"] else ACTIVE
    return for_user(db, cache, user_id, n, category, excluded, source), assignment["arm"], assignment["reason"]
