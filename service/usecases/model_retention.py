"""Pruning model versions: what a served, rolled-back-to or experimented-on version needs stays; the rest goes."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.store import model_retention as store
from service.store.database import Database
from service.usecases.recommendations import recommender_of

# What a host keeps per version in its model folder: the artifact's copy, and a run's own log; nothing
# else in the folder is touched (a shared folder's other files, versions named by hand).
_FILES = (".npz", ".log")
_VERSION = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


@dataclass(frozen=True)
class PruneReport:
    """The versions deleted (or that would be), their artifacts' bytes in the database, and this host's files removed (or that would be)."""

    versions: list[str]
    artifact_bytes: int
    files: list[Path]
    file_bytes: int


def _named(arms: list[dict[str, Any]]) -> set[str]:
    return {v for v in (recommender_of(arm.get("payload")).version for arm in arms) if v is not None}


def prune_models(db: Database, model_dir: Path, keep: int, stale_seconds: float, apply: bool) -> PruneReport:
    """Delete the versions nothing needs (with `apply`; else say which): not the active one, not the `keep` newest
    ready ones (to roll back to), not a run at work (its heartbeat under `stale_seconds` old), not one an experiment
    that has not stopped names. This host's files of versions no longer stored go too, those another host pruned included."""
    began = time.time()
    pruned = store.prune(db, keep, _named, began - stale_seconds, apply)
    # A run asked for while this ran is in no list read above: its log, written after, is spared by its time.
    files = sorted(
        f for f in (model_dir.glob("*") if model_dir.is_dir() else [])
        if f.suffix in _FILES and _VERSION.fullmatch(f.stem) and f.is_file() and f.stem not in pruned.kept and f.stat().st_mtime < began
    )
    size = sum(f.stat().st_size for f in files)
    if apply:
        for f in files:
            f.unlink(missing_ok=True)
    return PruneReport(pruned.versions, pruned.artifact_bytes, files, size)
