"""Model artifacts: bytes in the database (so every host can load them), cached as files on each host."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from sqlalchemy import func, select

from service.errors import HostCannot
from service.store.database import Database
from service.store.tables import ModelArtifactRow, ModelVersionRow

# PostgreSQL sends bytea as hex text, twice its size, and refuses any value over 1 GB: an artifact
# over 512 MB (a million items with the index) could be written but not read back whole.
READ_CHUNK_BYTES = 64 * 2**20


log = logging.getLogger(__name__)
# The folders this process has said it cannot cache in: one line each, not one a request.
_unwritable: set[Path] = set()


def write_artifact_file(path: Path, data: bytes) -> None:
    """Write atomically so that a reader never sees half a file; a failed write leaves no piece of it behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Thread ids repeat across processes: two workers fetching the same version would share a temporary file.
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a half-written piece on a full disk would keep it full


def cache_artifact_file(path: Path, data: bytes) -> None:
    """Keep a copy in this host's model folder when it can be written. The database holds every artifact:
    a folder that is read-only or full costs a read from the database per worker, never an answer."""
    try:
        write_artifact_file(path, data)
    except OSError as exc:
        if path.parent not in _unwritable:
            _unwritable.add(path.parent)
            log.warning("cannot cache model artifacts on this host; reading them from the database", extra={"model_dir": str(path.parent), "error": str(exc)})


def _cached(path: Path) -> bytes | None:
    """This host's copy, or None when there is none it can read (missing, a folder, unreadable)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _stored(db: Database, version: str) -> bytes | None:
    """The artifact's bytes from the database, read in chunks; None when there are none."""
    where = ModelArtifactRow.version == version
    with db.read() as session:
        size = session.scalar(select(func.length(ModelArtifactRow.data)).where(where))
        if size is None:
            return None
        # The pieces come from one snapshot (a read transaction); the caller's digest check refuses anything else.
        return b"".join(
            bytes(session.scalar(select(func.substr(ModelArtifactRow.data, start + 1, READ_CHUNK_BYTES)).where(where)) or b"")
            for start in range(0, size, READ_CHUNK_BYTES)
        )


class ArtifactUnusable(HostCannot):
    """A version whose artifact is gone or damaged, in the database and on this host: no retry mends it."""

    def __init__(self, version: str, what: str) -> None:
        super().__init__(f"model {version}'s artifact {what}; activate another version, or train again")


def artifact_bytes(db: Database, version: str, path: Path) -> bytes:
    """The artifact from this host's file at `path` when it matches the recorded digest, else from the database."""
    with db.read() as session:
        digest = session.scalar(select(ModelVersionRow.artifact_sha256).where(ModelVersionRow.version == version))
    if digest is None:
        raise ArtifactUnusable(version, "was never recorded")
    data = _cached(path)
    if data is not None and hashlib.sha256(data).hexdigest() == digest:
        return data
    stored = _stored(db, version)
    if stored is None:
        raise ArtifactUnusable(version, "is missing from the database")
    if hashlib.sha256(stored).hexdigest() != digest:
        raise ArtifactUnusable(version, "in the database does not match its recorded digest")
    cache_artifact_file(path, stored)
    return stored
