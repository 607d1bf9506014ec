"""Model versions: train, inspect, activate and roll back (editor)."""
from __future__ import annotations

from flask import Blueprint

from service.http.endpoint import EDITOR, endpoint, services
from service.http.schemas.catalogue import ModelList, ModelOut, TrainAccepted, TrainRequest, TrialOut
from service.timestamps import iso
from service.usecases import model_training as training
from service.usecases.model_training import ModelRecord

bp = Blueprint("models", __name__)
VERSION = {"version": "id"}


CANCELLED_ERROR = "cancelled through the API or the console before it finished"


def _out(record: ModelRecord, active: str | None) -> ModelOut:
    # The contract names three statuses and a field named there never changes meaning: a cancelled run
    # is a run that did not finish, `failed` to a client that polls for ready or failed, told apart by
    # `cancelled` and its error.
    cancelled = record.status == "cancelled"
    return ModelOut(
        version=record.version,
        status="failed" if cancelled else record.status,  # type: ignore[arg-type]
        cancelled=cancelled,
        algorithm=record.algorithm,
        params=record.params,
        matrix=record.matrix,
        evaluation=record.evaluation,
        metrics=record.metrics,
        data=record.data,
        error=CANCELLED_ERROR if cancelled and record.error is None else record.error,
        created_at=iso(record.created_at) or "",
        finished_at=iso(record.finished_at),
        training_seconds=record.training_seconds,
        active=record.version == active,
        tune=record.tune,
        tuning=[TrialOut(**t) for t in record.tuning] if record.tuning is not None else None,
    )


@bp.post("/v1/models")
@endpoint("Train a model from the stored events in the background", roles=EDITOR, tag="models", body=TrainRequest, body_optional=True, response=TrainAccepted, status=202, errors=(409,))
def train(body: TrainRequest) -> TrainAccepted:
    """Record the run, start it, answer at once."""
    svc = services()
    tune = body.tune.model_dump() if body.tune is not None else None
    record = training.train(svc.db, svc.config, body.algorithm, body.params, body.activate, body.matrix, body.evaluation, tune)
    return TrainAccepted(version=record.version, status="training")


@bp.get("/v1/models")
@endpoint("List model versions, newest first", roles=EDITOR, tag="models", response=ModelList)
def index() -> ModelList:
    """List versions."""
    svc = services()
    active = training.active_version(svc.db)
    return ModelList(models=[_out(r, active) for r in training.list_versions(svc.db, svc.config)], active_version=active)


@bp.get("/v1/models/<version:version>")
@endpoint("One model version with its metrics", roles=EDITOR, tag="models", response=ModelOut, errors=(404,), path=VERSION)
def show(version: str) -> ModelOut:
    """Show one version."""
    svc = services()
    return _out(training.get_version(svc.db, svc.config, version), training.active_version(svc.db))


@bp.post("/v1/models/<version:version>/activate")
@endpoint("Serve this version from every worker (also a rollback)", roles=EDITOR, tag="models", response=ModelOut, errors=(404, 409), path=VERSION)
def make_active(version: str) -> ModelOut:
    """Switch every worker to a ready version."""
    return _out(training.activate(services().db, version), version)


@bp.post("/v1/models/<version:version>/cancel")
@endpoint("Cancel a training run in progress; it activates nothing", roles=EDITOR, tag="models", response=ModelOut, errors=(404, 409), path=VERSION)
def cancel(version: str) -> ModelOut:
    """Mark the run cancelled; its process stops at its next trial or stage."""
    svc = services()
    return _out(training.cancel(svc.db, version), training.active_version(svc.db))
