"""Model versions: train, inspect, activate and roll back (editor)."""
from __future__ import annotations

import time

from flask import Blueprint

from service.api import EDITOR, endpoint
from service.errors import ApiError, conflict, not_found
from service.models import ModelVersion
from service.schemas.catalogue import ModelList, ModelOut, TrainAccepted, TrainRequest
from service.schemas.common import iso
from service.state import services
from service.training import activate, active_version, list_versions, request_training, start_training

bp = Blueprint("models", __name__)


def _out(row: ModelVersion, active: str | None) -> ModelOut:
    status, error = row.status, row.error
    timeout = services().config.training_timeout_seconds
    if status == "training" and time.time() - row.created_at > timeout:
        status, error = "failed", f"training did not finish within {timeout:.0f} s; its process has gone"
    return ModelOut(
        version=row.version,
        status=status,  # type: ignore[arg-type]
        algorithm=row.algorithm,
        params=row.params or {},
        metrics=row.metrics or {},
        data=row.data or {},
        error=error,
        created_at=iso(row.created_at) or "",
        finished_at=iso(row.finished_at),
        training_seconds=row.training_seconds,
        active=row.version == active,
    )


@bp.post("/v1/models")
@endpoint("Train a model from the stored events in the background", roles=EDITOR, tag="models", body=TrainRequest, body_optional=True, response=TrainAccepted, status=202)
def train(body: TrainRequest) -> TrainAccepted:
    """Record the run, start it, answer at once."""
    svc = services()
    try:
        row = request_training(svc.db, svc.config, body.algorithm, body.params, body.activate)
    except ValueError as exc:
        raise ApiError(422, f"params: {exc}", details=[{"field": "params", "message": str(exc)}]) from None
    start_training(svc.db, svc.config, row.version)
    return TrainAccepted(version=row.version, status="training")


@bp.get("/v1/models")
@endpoint("List model versions, newest first", roles=EDITOR, tag="models", response=ModelList)
def index() -> ModelList:
    """List versions."""
    active = active_version(services().db)
    return ModelList(models=[_out(r, active) for r in list_versions(services().db)], active_version=active)


@bp.get("/v1/models/<version>")
@endpoint("One model version with its metrics", roles=EDITOR, tag="models", response=ModelOut, errors=(404,), path={"version": "id"})
def show(version: str) -> ModelOut:
    """Show one version."""
    with services().db.read() as session:
        row = session.get(ModelVersion, version)
    if row is None:
        raise not_found("model version", version)
    return _out(row, active_version(services().db))


@bp.post("/v1/models/<version>/activate")
@endpoint("Serve this version from every worker (also a rollback)", roles=EDITOR, tag="models", response=ModelOut, errors=(404, 409), path={"version": "id"})
def make_active(version: str) -> ModelOut:
    """Switch every worker to a ready version."""
    try:
        row = activate(services().db, version)
    except RuntimeError as exc:
        raise conflict(str(exc)) from None
    if row is None:
        raise not_found("model version", version)
    return _out(row, version)
