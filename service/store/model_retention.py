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


def _needed(session: Session, named_by: NamedBy) -> set[str]:
    """The active version and every version an experiment not yet stopped names, read now."""
    session.expire_all()  # read again, not from the session's identity map: an activation may have committed since
    active = active_model(session)
    needed = {active} if active is not None else set()
    for arms in session.scalars(select(ExperimentRow.arms).where(ExperimentRow.status != "stopped")):
        needed |= named_by(list(arms or []))
    return needed


def prune(db: Database, keep: int, named_by: NamedBy, alive_after: float, apply: bool) -> Pruned:
    """Delete, with `apply` (else only say which), every version but the active one, the `keep` newest ready ones,
    those at work (training, or settled with a heartbeat after `alive_after`: a fit that cannot stop midway
    still holds its place) and those an experiment not yet stopped names; with their artifacts, in one transaction.

    Every version row is locked first, so a run that finishes meanwhile waits and one asked for meanwhile
    is not among them. The rows are deleted before what keeps them is read again: an activation or an
    experiment that named one of them while this ran either committed first, and is seen (the whole
    deletion is then rolled back), or waits for the deletion and then finds no such version.
    """
    with db.write() as session:
        rows = session.execute(
            select(ModelVersionRow.version, ModelVersionRow.status, ModelVersionRow.heartbeat_at)
            .order_by(ModelVersionRow.created_at.desc()).with_for_update()
        ).all()
        ready = [r.version for r in rows if r.status == "ready"][:keep]
        at_work = {r.version for r in rows if r.status == "training" or (r.status in ("cancelled", "failed") and (r.heartbeat_at or 0) > alive_after)}
        kept = set(ready) | at_work | _needed(session, named_by)
        doomed = sorted({r.version for r in rows} - kept)
        size = session.scalar(select(func.coalesce(func.sum(func.length(ModelArtifactRow.data)), 0)).where(ModelArtifactRow.version.in_(doomed))) or 0
        if apply and doomed:
            session.execute(delete(ModelArtifactRow).where(ModelArtifactRow.version.in_(doomed)))
            session.execute(delete(ModelVersionRow).where(ModelVersionRow.version.in_(doomed)))
            raced = _needed(session, named_by) & set(doomed)
            if raced:
                raise Conflict(f"version {min(raced)} was activated or named by an experiment while the versions were pruned; nothing was deleted, run again")
        return Pruned(doomed, int(size), {r.version for r in rows} - set(doomed))
