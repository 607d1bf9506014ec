"""What one process remembers of experiments between requests: definitions, stamps for a second, exposures answered."""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict

from service.store import experiments as experiment_store
from service.store import exposures
from service.store.database import Database
from service.store.experiments import Stamp, StoredDefinition


STATUS_SECONDS = 1.0  # how long a process trusts an experiment's status: a stop reaches other workers and hosts within it
REMEMBERED_EXPOSURES = 50_000  # per process: some 20 MB
# Parsed definitions per process: the most recently used, by count and by the size of their arms' JSON
# (an arm's payload may hold 10,000 values, so one definition can take tens of megabytes). Room for
# two definitions as large as a request may send, so that two running ones do not evict each other.
REMEMBERED_DEFINITIONS = 256
REMEMBERED_DEFINITION_BYTES = 64 * 2**20


class ExperimentCache:
    """What one process remembers about experiments, each part exact or bounded in time.

    - Definitions by stamp (revision and salt): a revision never changes, so neither do they.
    - Each experiment's stamp, for at most STATUS_SECONDS after the read began; this process's
      own changes (`changed`) take effect at once. A draft's is never trusted: a draft can
      be deleted, and its start must be seen at once.
    - The users' exposures it has answered most recently: an exposure is written once and never
      changes, so a user this process answered before costs no query at all.
    """

    def __init__(self, status_seconds: float = STATUS_SECONDS, exposures_kept: int = REMEMBERED_EXPOSURES) -> None:
        self._definitions: OrderedDict[str, tuple[int, StoredDefinition]] = OrderedDict()
        self._definition_bytes = 0
        self._stamps: dict[str, tuple[float, Stamp]] = {}
        self._exposures: OrderedDict[tuple[str, str], exposures.Exposure] = OrderedDict()
        self._status_seconds = status_seconds
        self._exposures_kept = exposures_kept
        self._lock = threading.Lock()

    def current(self, db: Database, key: str) -> tuple[StoredDefinition, str]:
        """The experiment's definition at its current revision and its status, read now; NotFound if it does not exist."""
        read_at = time.monotonic()
        stamp = experiment_store.stamp(db, key)
        self.note(key, stamp, read_at)
        return self.get(db, key, stamp), stamp.status

    def get(self, db: Database, key: str, stamp: Stamp) -> StoredDefinition:
        """The definition the stamp names (or a newer one), loading it once per process."""
        with self._lock:
            found = self._definitions.get(key)
            if found is not None:
                self._definitions.move_to_end(key)
        cached = found[1] if found is not None else None
        if cached is not None and cached.revision == stamp.revision and cached.salt == stamp.salt:
            return cached
        loaded = experiment_store.load_definition(db, key)
        size = len(json.dumps(loaded.arms_json, default=str)) + len(loaded.experiment.description)
        with self._lock:
            replaced = self._definitions.pop(key, None)
            self._definition_bytes -= replaced[0] if replaced is not None else 0
            self._definitions[key] = (size, loaded)
            self._definition_bytes += size
            while len(self._definitions) > 1 and (
                len(self._definitions) > REMEMBERED_DEFINITIONS or self._definition_bytes > REMEMBERED_DEFINITION_BYTES
            ):
                self._drop(next(iter(self._definitions)))
        return loaded

    def _drop(self, key: str) -> None:
        """Forget a definition and its stamp; under `_lock`."""
        gone = self._definitions.pop(key, None)
        if gone is not None:
            self._definition_bytes -= gone[0]
        self._stamps.pop(key, None)

    def stamp(self, key: str) -> Stamp | None:
        """The experiment's stamp if its read began less than STATUS_SECONDS ago and it is not a draft, else None."""
        known = self._stamps.get(key)
        if known is None or known[0] < time.monotonic() or known[1].status == "draft":
            return None
        return known[1]

    def note(self, key: str, stamp: Stamp, read_at: float) -> None:
        """Remember a stamp read from the database by a read that began at `read_at` (time.monotonic())."""
        with self._lock:
            known = self._stamps.get(key)
            if known is not None and known[1].salt == stamp.salt and known[1].revision > stamp.revision:
                return  # a slower read began before a newer one, or before this process's own change
            if known is None and len(self._stamps) >= REMEMBERED_DEFINITIONS:  # stamps live a second: drop the lapsed ones
                now = time.monotonic()
                self._stamps = {k: v for k, v in self._stamps.items() if v[0] > now}
            self._stamps[key] = (read_at + self._status_seconds, stamp)

    def changed(self, key: str, stamp: Stamp | None) -> None:
        """This process changed the experiment (None: deleted it); its answers follow at once."""
        if stamp is None:
            with self._lock:
                self._drop(key)
        else:
            self.note(key, stamp, time.monotonic())

    def exposure(self, key: str, user_id: str) -> exposures.Exposure | None:
        """The user's exposure, if this process has seen it recently."""
        with self._lock:
            found = self._exposures.get((key, user_id))
            if found is not None:
                self._exposures.move_to_end((key, user_id))
            return found

    def remember(self, key: str, user_id: str, exposure: exposures.Exposure) -> None:
        """Keep an exposure read or written, forgetting the least recently used beyond the bound."""
        with self._lock:
            self._exposures[(key, user_id)] = exposure
            if len(self._exposures) > self._exposures_kept:
                self._exposures.popitem(last=False)
