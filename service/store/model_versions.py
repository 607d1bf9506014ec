"""Model versions: training runs, their outcome, and which one every worker serves."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from service.errors import Conflict
from service.store.database import Database
from service.store.state import active_model, active_model_revision, replace_active_model, set_active_model
from service.store.tables import ModelArtifactRow, ModelVersionRow


# Said in a finished run's `data.activation` when it was asked to activate and did not.
NOT_ACTIVATED = "not activated: another version was activated while this run trained, and that choice stands"


@dataclass(frozen=True)
class ModelRecord:
    """A stored version: what was asked for and, once finished, what came of it."""

    version: str
    status: str
    algorithm: str
    params: dict[str, Any]
    matrix: dict[str, Any]
    evaluation: dict[str, Any]
    created_at: float
    activate_when_ready: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    finished_at: float | None = None
    training_seconds: float | None = None
    runner: str | None = None
    heartbeat_at: float | None = None
    tune: dict[str, Any] | None = None
    tuning: list[dict[str, Any]] | None = None


def _record(row: ModelVersionRow) -> ModelRecord:
    return ModelRecord(
        version=row.version,
        status=row.status,
        algorithm=row.algorithm,
        params=dict(row.params or {}),
        matrix=dict(row.matrix or {}),
        evaluation=dict(row.evaluation or {}),
        created_at=row.created_at,
        activate_when_ready=bool(row.activate_when_ready),
        metrics=dict(row.metrics or {}),
        data=dict(row.data or {}),
        error=row.error,
        finished_at=row.finished_at,
        training_seconds=row.training_seconds,
        runner=row.runner,
        heartbeat_at=row.heartbeat_at,
        tune=dict(row.tune) if row.tune is not None else None,
        tuning=list(row.tuning) if row.tuning is not None else None,
    )


def insert(
    db: Database, version: str, algorithm: str, params: dict[str, Any], matrix: dict[str, Any], evaluation: dict[str, Any], activate: bool,
    tune: dict[str, Any] | None = None, max_runs: int | None = None, alive_for: float = 30.0, starting_for: float = 30.0,
) -> ModelRecord:
    """Record a training run in status `training` (with its tuning settings, when tuned); with `max_runs`, only while
    fewer are at work (a settled run whose heartbeat is under `alive_for` seconds old counts, and a cancelled one
    whose process has not beaten yet, for `starting_for` seconds after it was requested)."""
    row = ModelVersionRow(
        version=version,
        status="training",
        algorithm=algorithm,
        params=params,
        matrix=matrix,
        evaluation=evaluation,
        metrics={},
        data={},
        activate_when_ready=activate,
        created_at=time.time(),
        tune=tune,
        tuning=[] if tune is not None else None,
    )
    with db.write() as session:
        if max_runs is not None:
            _at_most(session, max_runs, time.time() - alive_for, time.time() - starting_for)
        if activate:
            row.activate_over = active_model_revision(session)
        session.add(row)
        session.flush()
        return _record(row)


def _at_most(session: Session, max_runs: int, alive_after: float, requested_after: float) -> None:
    """Conflict when `max_runs` runs are working already: `training`, or settled but with a process still
    at work (a heartbeat since `alive_after`, or none yet on a run cancelled since `requested_after`, whose
    process is starting); two requests at once count one after the other."""
    if session.get_bind().dialect.name == "postgresql":  # SQLite's writers take turns already
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('stickyloop.training-runs'))"))
    settled_at_work = ModelVersionRow.status.in_(("cancelled", "failed")) & (ModelVersionRow.heartbeat_at > alive_after)
    # Cancelled before its process's first heartbeat, a run held no place, and start-and-cancel ran any number of processes.
    cancelled_starting = (ModelVersionRow.status == "cancelled") & ModelVersionRow.heartbeat_at.is_(None) & (ModelVersionRow.created_at > requested_after)
    working = (ModelVersionRow.status == "training") | settled_at_work | cancelled_starting
    running = session.scalars(select(ModelVersionRow.version).where(working).order_by(ModelVersionRow.created_at)).all()
    if len(running) >= max_runs:
        raise Conflict(
            f"{len(running)} training runs are at work ({', '.join(running)}), the most this service runs at once (TRAINING_MAX_RUNS); "
            "wait for one to finish, or cancel one (a cancelled fit that cannot stop midway holds its place until it ends)"
        )


def get(db: Database, version: str) -> ModelRecord | None:
    """One version, or None."""
    with db.read() as session:
        row = session.get(ModelVersionRow, version)
        return _record(row) if row is not None else None


def list_all(db: Database) -> list[ModelRecord]:
    """Every version, newest first."""
    with db.read() as session:
        return [_record(r) for r in session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.created_at.desc()))]


def finish(
    db: Database, version: str, artifact: bytes, digest: str, metrics: dict[str, Any], data: dict[str, Any], seconds: float, max_event_id: int,
    params: dict[str, Any] | None = None,
) -> bool:
    """Store a finished run's artifact, mark it ready (and active if asked) with the `params` tuning chose; False if no longer
    `training`. Safe to repeat: the same artifact finished before is True."""
    with db.write() as session:
        stored = session.get(ModelVersionRow, version, with_for_update=True)
        if stored is not None and stored.status == "ready" and stored.artifact_sha256 == digest:
            return True  # stored by an earlier try whose answer was lost
        if stored is None or stored.status != "training":
            return False
        session.add(ModelArtifactRow(version=version, data=artifact))
        stored.status = "ready"
        if params is not None:
            stored.params = params
        stored.metrics = metrics
        stored.data = data
        stored.training_seconds = seconds
        stored.finished_at = time.time()
        stored.max_event_id = max_event_id
        stored.artifact_sha256 = digest
        if stored.activate_when_ready:
            if stored.activate_over is None:  # asked for before runs remembered what they replace
                set_active_model(session, version)
            elif not replace_active_model(session, version, stored.activate_over):
                stored.data = {**data, "activation": NOT_ACTIVATED}
        return True


def fail(db: Database, version: str, error: str, seconds: float | None = None) -> bool:
    """Mark a run failed with its reason; False if it had already finished one way or the other."""
    with db.write() as session:
        stored = session.get(ModelVersionRow, version, with_for_update=True)
        if stored is None or stored.status != "training":
            return False
        _mark_failed(stored, error, seconds)
        return True


def fail_silent(db: Database, version: str, error: str, heartbeat_at: float | None) -> bool:
    """Mark failed a run judged dead from the heartbeat the caller read; False if it has sent one since, or finished."""
    with db.write() as session:
        stored = session.get(ModelVersionRow, version, with_for_update=True)
        if stored is None or stored.status != "training" or stored.heartbeat_at != heartbeat_at:
            return False
        _mark_failed(stored, error, None)
        return True


def _mark_failed(stored: ModelVersionRow, error: str, seconds: float | None) -> None:
    stored.status = "failed"
    stored.error = error
    stored.finished_at = time.time()
    stored.training_seconds = seconds if seconds is not None else stored.finished_at - stored.created_at


def add_trial(db: Database, version: str, trial: dict[str, Any] | None, progress: dict[str, Any]) -> bool:
    """Append a finished tuning trial (None: one that failed, which only counts) and the run's progress;
    False if the run is no longer `training`. Safe to repeat: a trial already counted is not appended again."""
    with db.write() as session:
        stored = session.get(ModelVersionRow, version, with_for_update=True)
        if stored is None or stored.status != "training":
            return False
        if progress["trials_done"] <= ((stored.data or {}).get("progress") or {}).get("trials_done", 0):
            return True  # stored by an earlier try whose answer was lost
        # New objects, not in-place changes: the JSON columns only notice assignment.
        if trial is not None:
            stored.tuning = [*(stored.tuning or []), trial]
        stored.data = {**(stored.data or {}), "progress": progress}
        return True


def status(db: Database, version: str) -> str | None:
    """A version's status alone, or None when it does not exist: what a run polls to learn it was cancelled."""
    with db.read() as session:
        return session.scalar(select(ModelVersionRow.status).where(ModelVersionRow.version == version))


def _is(status: str) -> str:
    """A status in a sentence: a cancelled run reads `failed` over HTTP, so say what happened to it."""
    return "was cancelled" if status == "cancelled" else f"is {status}"


def cancel(db: Database, version: str) -> ModelRecord | None:
    """Mark a `training` run cancelled, so that it activates nothing; None when it does not exist, Conflict otherwise."""
    with db.write() as session:
        stored = session.get(ModelVersionRow, version, with_for_update=True)
        if stored is None:
            return None
        if stored.status != "training":
            raise Conflict(f"model {version} {_is(stored.status)}; only a run in progress can be cancelled")
        stored.status = "cancelled"
        stored.finished_at = time.time()
        stored.training_seconds = stored.finished_at - stored.created_at
        return _record(stored)


def beat(db: Database, version: str, runner: str | None = None) -> bool:
    """Refresh a run's heartbeat (and record its runner, when given); False if it is no longer `training`."""
    with db.write() as session:
        stored = session.get(ModelVersionRow, version, with_for_update=True)
        if stored is None or stored.status != "training":
            return False
        stored.heartbeat_at = time.time()
        if runner is not None:
            stored.runner = runner
        return True


def still_running(db: Database, version: str) -> None:
    """Refresh the heartbeat of a run settled (cancelled, reported failed) while its process still works
    (a fit that cannot stop midway): it holds its place under TRAINING_MAX_RUNS until it exits."""
    with db.write() as session:
        session.execute(update(ModelVersionRow).where(ModelVersionRow.version == version, ModelVersionRow.status != "training").values(heartbeat_at=time.time()))


def exited(db: Database, version: str) -> None:
    """The run's process is done with it: a cancelled or failed run no longer holds a place (a ready one keeps its last heartbeat).

    Its heartbeat is set to the epoch, long stale, rather than cleared: no heartbeat at all means a process still starting.
    """
    with db.write() as session:
        session.execute(update(ModelVersionRow).where(ModelVersionRow.version == version, ModelVersionRow.status.in_(("cancelled", "failed"))).values(heartbeat_at=0.0))


def activate(db: Database, version: str) -> ModelRecord | None:
    """Make a ready version the one every worker serves; None when it does not exist, Conflict unless ready."""
    with db.write() as session:
        # Shared-locked: a prune deleting the version waits for this activation, then sees it (model_retention).
        row = session.get(ModelVersionRow, version, with_for_update={"read": True})
        if row is None:
            return None
        if row.status != "ready":
            raise Conflict(f"model {version} {_is(row.status)}; only a ready model can be activated")
        # Its artifact read back on every worker: without one, every answer would fail (its digest is checked there).
        if session.scalar(select(func.length(ModelArtifactRow.data)).where(ModelArtifactRow.version == version)) is None:
            raise Conflict(f"model {version} has no stored artifact to serve; train again")
        # Activating the version already served changes nothing, so it keeps a pending run's turn
        # (a client retrying its activation must not cancel what was asked to go live when ready).
        if active_model(session) != version:
            set_active_model(session, version)
        return _record(row)
