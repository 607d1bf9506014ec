"""Per-process cache of loaded models; what is active is always read from the database.

Every request reads the shared state (active version, catalogue revision) in one
small query (`service.store.state`), so all workers on all hosts switch on the
next request after an activation; only the loaded arrays are cached, keyed by
immutable version.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

from recommender.index import ServingIndex
from service.errors import HostCannot
from service.store.artifacts import ArtifactUnusable, artifact_bytes
from service.store.catalogue import CatalogueView, catalogue_view
from service.store.database import Database

log = logging.getLogger(__name__)

# How long a process trusts that a version's artifact is unusable before reading it again: a request
# each would otherwise read the whole artifact (hundreds of megabytes) back from the database to fail.
UNUSABLE_SECONDS = 10.0


class ModelCache:
    """Loaded serving indexes by version (the newest few) and their catalogue views."""

    def __init__(self, db: Database, model_dir: Path, keep: int = 2, pin_seconds: float = 600.0) -> None:
        self.db = db
        self.model_dir = Path(model_dir)
        self.keep = keep
        # Versions an experiment arm serves stay loaded while they are in use, whatever is activated meanwhile.
        self.pin_seconds = pin_seconds
        self._pinned: dict[str, float] = {}
        self._indexes: OrderedDict[str, ServingIndex] = OrderedDict()
        self._views: dict[str, CatalogueView] = {}
        self._lock = threading.Lock()  # the dictionaries; never held while an artifact loads
        self._loading: dict[str, threading.Lock] = {}  # one per version being loaded
        # One load at a time, as before the loads left the lock: an artifact and its arrays take
        # hundreds of megabytes at a million items, and a fresh worker may need several versions.
        self._one_load = threading.Lock()
        self._unusable: dict[str, tuple[float, str]] = {}  # version: (until, why), see UNUSABLE_SECONDS
        self.latest: ServingIndex | None = None  # the index this process served last

    def artifact_path(self, version: str) -> Path:
        """Where this host keeps a version's artifact."""
        return self.model_dir / f"{version}.npz"

    def index(self, version: str, pinned: bool = False) -> ServingIndex:
        """The serving index of a version, loading it on first use; `pinned` for a version an experiment arm serves.

        A version loads once per process, and the versions already loaded keep answering meanwhile:
        a million-item artifact takes seconds, which every other request of the worker would wait out.
        """
        with self._lock:
            found = self._found(version, pinned)
            if found is not None:
                return found
            self._raise_if_unusable(version)
            loading = self._loading.setdefault(version, threading.Lock())
        with loading, self._one_load:
            with self._lock:
                found = self._found(version, pinned)  # loaded by another thread while this one waited
                if found is not None:
                    if self._loading.get(version) is loading:
                        del self._loading[version]
                    return found
                self._raise_if_unusable(version)  # found so by the thread this one waited for
            try:
                index = ServingIndex.from_bytes(artifact_bytes(self.db, version, self.artifact_path(version)))
            except BaseException as exc:
                with self._lock:
                    if self._loading.get(version) is loading:  # not a newer load's lock
                        del self._loading[version]
                    if isinstance(exc, ArtifactUnusable):
                        now = time.monotonic()
                        self._unusable = {v: found for v, found in self._unusable.items() if found[0] > now}
                        self._unusable[version] = (now + UNUSABLE_SECONDS, exc.message)
                raise
            with self._lock:  # stored and its lock dropped at once: no request can find neither
                self._unusable.pop(version, None)
                self._indexes[version] = index
                if self._loading.get(version) is loading:
                    del self._loading[version]
                if not pinned:
                    self.latest = index
                self._evict(time.monotonic())
        log.info("model loaded", extra={"version": version, "items": index.n_items, "users": len(index.user_ids)})
        return index

    def _raise_if_unusable(self, version: str) -> None:
        """HostCannot, saying what this process's last try at the version's artifact found, while that is recent; under `_lock`."""
        unusable = self._unusable.get(version)
        if unusable is not None and unusable[0] > time.monotonic():
            # A new error each time: one raised again would gather every request's frames in its traceback.
            raise HostCannot(unusable[1])

    def _found(self, version: str, pinned: bool) -> ServingIndex | None:
        """A loaded version, marked as just used (and pinned for a while when an arm serves it); under `_lock`."""
        if pinned:
            self._pinned[version] = time.monotonic() + self.pin_seconds
        found = self._indexes.get(version)
        if found is not None:
            self._indexes.move_to_end(version)
            if not pinned:
                self.latest = found
        return found

    def _evict(self, now: float) -> None:
        """Drop the least recently used unpinned versions beyond `keep`."""
        self._pinned = {v: until for v, until in self._pinned.items() if until > now}
        unpinned = [v for v in self._indexes if v not in self._pinned]
        for old in unpinned[: max(0, len(unpinned) - self.keep)]:
            del self._indexes[old]
            self._views.pop(old, None)

    def view(self, index: ServingIndex, revision: int, patchable_from: int | None = None) -> CatalogueView:
        """Availability of the index's items as of a catalogue revision, or a later one.

        A view at `patchable_from` or later is brought up to date by reading only the items stamped
        since (several threads seeing the new revision at once may each do so: a few rows each).
        A view newer than asked for is answered as it is: it holds every change the request must see.
        """
        view = self._views.get(index.version)
        if view is not None and view.revision >= revision:
            return view
        patchable = view is not None and patchable_from is not None and view.revision >= patchable_from
        view = catalogue_view(self.db, index.item_index, revision, previous=view if patchable else None)
        self._views[index.version] = view
        return view
