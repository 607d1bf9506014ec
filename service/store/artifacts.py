"""Model artifacts: bytes in the database (so every host can load them), cached as files on each host."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from sqlalchemy import select

from service.store.database import Database
from service.store.tables import ModelArtifactRow, ModelVersionRow


def write_artifact_file(path: Path, data: bytes) -> None:
    """Write atomically so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


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
    with db.read() as session:
        stored = session.scalar(select(ModelArtifactRow.data).where(ModelArtifactRow.version == version))
    if stored is None:
        raise LookupError(f"model {version} has no artifact")
    write_artifact_file(path, bytes(stored))
    return bytes(stored)
