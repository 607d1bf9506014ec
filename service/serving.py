"""Per-process cache of loaded models; what is active is always read from the database.

Every request reads the shared state (active version, catalogue revision) in one
small query, so all workers on all hosts switch on the next request after an
activation; only the loaded arrays are cached, keyed by immutable version.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from recommender.index import ServingIndex, UserEvent
from service.api import KeyCheck, read_with_key
from service.db import Database
from service.models import ModelArtifact, ModelVersion
from service.stores.catalogue import CATALOGUE_KEY, CatalogueView, catalogue_view

log = logging.getLogger(__name__)
ACTIVE_MODEL_KEY = "active_model"


@dataclass(frozen=True)
class SharedState:
    """What every worker must agree on, read once per request."""

    active_version: str | None
    catalogue_revision: int


# Rows carry a tag in front (0 state, 1 events) so that one read can return several
# kinds, and so that the caller's key row (tag 2, see KeyCheck) can ride along.
_STATE = "SELECT 0, key, value, revision FROM app_state WHERE key IN (?, ?)"
# The shared state and a user's recent events in one round trip: a recommendation
# request needs both, and on the hot path the round trip costs more than either read.
_STATE_AND_EVENTS = (
    _STATE + " UNION ALL "
    "SELECT * FROM (SELECT 1, item_id, type, ts FROM events WHERE user_id = ? {only} ORDER BY ts DESC LIMIT ?) AS recent"
)
_ALL_EVENTS = _STATE_AND_EVENTS.format(only="")
_PURCHASES = _STATE_AND_EVENTS.format(only="AND type = 'purchase'")
USER_EVENTS_LIMIT = 5000


def _state(rows: list[tuple[Any, ...]]) -> SharedState:
    state = {r[1]: (r[2], r[3]) for r in rows if r[0] == 0}
    active = state.get(ACTIVE_MODEL_KEY, ("", 0))[0] or None
    return SharedState(active, int(state.get(CATALOGUE_KEY, ("", 0))[1]))


def read_shared_state(db: Database, api_key: KeyCheck | None = None) -> SharedState:
    """The active model version and the catalogue revision, in one query (with `api_key`, also the caller's key)."""
    return _state(read_with_key(db, _STATE, (ACTIVE_MODEL_KEY, CATALOGUE_KEY), api_key))


def read_state_and_user_events(
    db: Database, user_id: str, purchases_only: bool = False, api_key: KeyCheck | None = None
) -> tuple[SharedState, list[UserEvent]]:
    """The shared state and the user's most recent events (or purchases) as (item_id, type, ts), newest first.

    With `api_key`, the caller's API key is checked in the same round trip.
    """
    sql = _PURCHASES if purchases_only else _ALL_EVENTS
    rows = read_with_key(db, sql, (ACTIVE_MODEL_KEY, CATALOGUE_KEY, user_id, USER_EVENTS_LIMIT), api_key)
    return _state(rows), [(r[1], r[2], float(r[3])) for r in rows if r[0] == 1]


class ModelCache:
    """Loaded serving indexes by version (the newest few) and their catalogue views."""

    def __init__(self, db: Database, model_dir: Path, keep: int = 2) -> None:
        self.db = db
        self.model_dir = Path(model_dir)
        self.keep = keep
        self._indexes: OrderedDict[str, ServingIndex] = OrderedDict()
        self._views: dict[str, CatalogueView] = {}
        self._lock = threading.Lock()
        self.latest: ServingIndex | None = None  # the index this process served last

    def artifact_path(self, version: str) -> Path:
        """Where this host keeps a version's artifact."""
        return self.model_dir / f"{version}.npz"

    def index(self, version: str) -> ServingIndex:
        """The serving index of a version, loading it on first use."""
        with self._lock:
            found = self._indexes.get(version)
            if found is not None:
                self._indexes.move_to_end(version)
                self.latest = found
                return found
            index = ServingIndex.from_bytes(self._artifact_bytes(version))
            self._indexes[version] = index
            self.latest = index
            while len(self._indexes) > self.keep:
                old, _ = self._indexes.popitem(last=False)
                self._views.pop(old, None)
            log.info("model loaded", extra={"version": version, "items": index.n_items, "users": len(index.user_ids)})
            return index

    def view(self, index: ServingIndex, revision: int) -> CatalogueView:
        """Availability of the index's items as of a catalogue revision."""
        view = self._views.get(index.version)
        if view is None or view.revision != revision:
            view = catalogue_view(self.db, index.item_ids, revision)
            self._views[index.version] = view
        return view

    def _artifact_bytes(self, version: str) -> bytes:
        """The artifact from this host's disk when it matches the recorded digest, else from the database."""
        with self.db.read() as session:
            digest = session.scalar(select(ModelVersion.artifact_sha256).where(ModelVersion.version == version))
        if digest is None:
            raise LookupError(f"model {version} has no artifact")
        path = self.artifact_path(version)
        if path.exists():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == digest:
                return data
        with self.db.read() as session:
            stored = session.scalar(select(ModelArtifact.data).where(ModelArtifact.version == version))
        if stored is None:
            raise LookupError(f"model {version} has no artifact")
        write_artifact_file(path, bytes(stored))
        return bytes(stored)


def write_artifact_file(path: Path, data: bytes) -> None:
    """Write atomically so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
