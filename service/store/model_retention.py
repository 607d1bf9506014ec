"""Which model versions to keep, and deleting the others with their artifacts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.errors import Conflict
from service.store.database import Database
from service.store.state import active_model
from service.store.tables import ExperimentRow, ModelArtifactRow, ModelVersionRow

# The versions an experiment's arms name, from its stored arms.
NamedBy = Callable[[list[dict[str, Any]]], set[str]]


@dataclass(frozen=True)
class Pruned:
    """The versions deleted (or that would be), the bytes their artifacts held, and every version left."""

    versions: list[str]
    artifact_bytes: int
    kept: set[str]


def _kept(session: Session, keep: int, named_by: NamedBy) -> set[str]:
    """The active version, the `keep` newest ready ones, every run still training and every version an experiment not yet stopped names."""
    newest = session.scalars(select(ModelVersionRow.version).where(ModelVersionRow.status == "ready").order_by(ModelVersionRow.created_at.desc()).limit(keep))
    training = session.scalars(select(ModelVersionRow.version).where(ModelVersionRow.status == "training"))
    active = active_model(session)
    kept = set(newest) | set(training) | ({active} if active is not None else set())
    for arms in session.scalars(select(ExperimentRow.arms).where(ExperimentRow.status != "stopped")):
        kept |= named_by(list(arms or []))
    return kept


def prune(db: Database, keep: int, named_by: NamedBy, apply: bool) -> Pruned:
    """Delete every version `_kept` does not keep, with its artifact, in one transaction (with `apply`; else only say which).

    The rows are deleted before what keeps them is read again: an activation or an experiment that
    named one of them while this ran either committed first, and is seen, or waits for the deletion and
    then finds no such version. Seen, the whole deletion is rolled back.
    """
    with db.write() as session:
        kept = _kept(session, keep, named_by)
        every = set(session.scalars(select(ModelVersionRow.version)))
        doomed = sorted(every - kept)
        size = session.scalar(select(func.coalesce(func.sum(func.length(ModelArtifactRow.data)), 0)).where(ModelArtifactRow.version.in_(doomed))) or 0
        if apply and doomed:
            session.execute(delete(ModelArtifactRow).where(ModelArtifactRow.version.in_(doomed)))
            session.execute(delete(ModelVersionRow).where(ModelVersionRow.version.in_(doomed)))
            raced = _kept(session, keep, named_by) & set(doomed)
            if raced:
                raise Conflict(f"version {min(raced)} was activated or named by an experiment while the versions were pruned; nothing was deleted, run again")
        return Pruned(doomed, int(size), kept | (every - set(doomed)))
