"""Model artifacts: bytes in the database (so every host can load them), cached as files on each host."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from sqlalchemy import func, select

from service.store.database import Database
from service.store.tables import ModelArtifactRow, ModelVersionRow

# PostgreSQL sends bytea as hex text, twice its size, and refuses any value over 1 GB: an artifact
# over 512 MB (a million items with the index) could be written but not read back whole.
READ_CHUNK_BYTES = 64 * 2**20


def write_artifact_file(path: Path, data: bytes) -> None:
    """Write atomically so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Thread ids repeat across processes: two workers fetching the same version would share a temporary file.
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _stored(db: Database, version: str) -> bytes | None:
    """The artifact's bytes from the database, read in chunks; None when there are none."""
    where = ModelArtifactRow.version == version
    with db.read() as session:
        size = session.scalar(select(func.length(ModelArtifactRow.data)).where(where))
        if size is None:
            return None
        # A row deleted between two pieces leaves a gap, which the caller's digest check refuses.
        return b"".join(
            bytes(session.scalar(select(func.substr(ModelArtifactRow.data, start + 1, READ_CHUNK_BYTES)).where(where)) or b"")
            for start in range(0, size, READ_CHUNK_BYTES)
        )


def artifact_bytes(db: Database, version: str, path: Path) -> bytes:
    """The artifact from this host's file at `path` when it matches the recorded digest, else from the database."""
    with db.read() as session:
        digest = session.scalar(select(ModelVersionRow.artifact_sha256).where(ModelVersionRow.version == version))
    if digest is None:
        raise LookupError(f"model {version} has no artifact")
    if path.exists():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == digest:
            return data
    stored = _stored(db, version)
    if stored is None:
        raise LookupError(f"model {version} has no artifact")
    if hashlib.sha256(stored).hexdigest() != digest:
        raise LookupError(f"model {version}'s stored artifact does not match its recorded digest")
    write_artifact_file(path, stored)
    return stored
