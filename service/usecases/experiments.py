"""Experiments: define, change while draft, start, pause, stop, list."""
from __future__ import annotations

from typing import Any

from experiments.layers import free_share
from service.store import experiments as store
from service.store.database import Database
from service.store.experiment_codec import to_json

ARM_DEFAULTS: dict[str, Any] = {"weight": 1.0, "payload": {}, "schedule": None}
NEW_DEFAULTS: dict[str, Any] = {"description": "", "type": "ab", "traffic": 1.0, "metrics": [], "bandit": None}


def _complete(fields: dict[str, Any]) -> dict[str, Any]:
    """Every arm with all its fields, as stored."""
    if fields.get("arms") is not None:
        fields["arms"] = [{**ARM_DEFAULTS, **arm} for arm in fields["arms"]]
    return fields


def create(db: Database, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate the whole definition, store it as a draft, answer it."""
    return to_json(store.create(db, _complete({**NEW_DEFAULTS, **fields})))


def get(db: Database, key: str) -> dict[str, Any]:
    """One experiment."""
    return to_json(store.get(db, key))


def list_all(db: Database, status: str | None = None) -> list[dict[str, Any]]:
    """Experiments, newest first, optionally of one status."""
    return [to_json(r) for r in store.list_all(db, status)]


def change(db: Database, key: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply the fields sent (design fields only while draft)."""
    return to_json(store.patch(db, key, _complete(changes)))


def remove(db: Database, key: str) -> None:
    """Delete a draft."""
    store.remove(db, key)


def move(db: Database, key: str, action: str) -> dict[str, Any]:
    """Start, pause or stop."""
    return to_json(store.move(db, key, action))


def layer(db: Database, name: str) -> dict[str, Any]:
    """The ranges running and paused experiments own in a layer, and the share still free."""
    ranges = store.layer_ranges(db, name)
    return {"layer": name, "ranges": [{"experiment": r.experiment, "start": r.start, "end": r.end} for r in ranges], "free": free_share(ranges)}
