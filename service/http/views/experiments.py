"""Experiments: define, change while draft, start, pause, stop (editor; analysts read)."""
from __future__ import annotations

from flask import Blueprint, Response

from service.http.endpoint import EDITOR, READ_EXPERIMENTS, endpoint, no_content, services
from service.http.schemas.experiments import ExperimentFilter, ExperimentIn, ExperimentList, ExperimentOut, ExperimentPatch
from service.usecases import experiments

bp = Blueprint("experiments", __name__)
KEY = {"key": "key"}


@bp.post("/v1/experiments")
@endpoint("Create an experiment as a draft", roles=EDITOR, tag="experiments", body=ExperimentIn, response=ExperimentOut, status=201, errors=(409,))
def create(body: ExperimentIn) -> ExperimentOut:
    """Validate the whole definition, then store it."""
    return ExperimentOut.model_validate(experiments.create(services().db, body.model_dump(mode="json", exclude_unset=True)))


@bp.get("/v1/experiments")
@endpoint("List experiments, newest first", roles=READ_EXPERIMENTS, tag="experiments", query=ExperimentFilter, response=ExperimentList)
def index(query: ExperimentFilter) -> ExperimentList:
    """List experiments."""
    return ExperimentList(experiments=[ExperimentOut.model_validate(e) for e in experiments.list_all(services().db, query.status)])


@bp.get("/v1/experiments/<key>")
@endpoint("One experiment", roles=READ_EXPERIMENTS, tag="experiments", response=ExperimentOut, errors=(404,), path=KEY)
def show(key: str) -> ExperimentOut:
    """Show one experiment."""
    return ExperimentOut.model_validate(experiments.get(services().db, key))


@bp.patch("/v1/experiments/<key>")
@endpoint("Change an experiment (its design only while draft, its analysis plan until it stops)", roles=EDITOR, tag="experiments", body=ExperimentPatch, response=ExperimentOut, errors=(404, 409), path=KEY)
def change(key: str, body: ExperimentPatch) -> ExperimentOut:
    """Apply the fields sent."""
    return ExperimentOut.model_validate(experiments.change(services().db, services().experiment_cache, key, body.model_dump(mode="json", exclude_unset=True)))


@bp.delete("/v1/experiments/<key>")
@endpoint("Delete a draft", roles=EDITOR, tag="experiments", status=204, errors=(404, 409), path=KEY)
def remove(key: str) -> Response:
    """Delete a draft experiment."""
    experiments.remove(services().db, services().experiment_cache, key)
    return no_content()


def _move(key: str, action: str) -> ExperimentOut:
    return ExperimentOut.model_validate(experiments.move(services().db, services().experiment_cache, key, action, services().config.max_served_versions))


@bp.post("/v1/experiments/<key>/start")
@endpoint("Start (from draft) or resume (from paused)", roles=EDITOR, tag="experiments", response=ExperimentOut, errors=(404, 409), path=KEY)
def start(key: str) -> ExperimentOut:
    """draft or paused -> running."""
    return _move(key, "start")


@bp.post("/v1/experiments/<key>/pause")
@endpoint("Pause: exposed users keep their arm, nobody new is enrolled", roles=EDITOR, tag="experiments", response=ExperimentOut, errors=(404, 409), path=KEY)
def pause(key: str) -> ExperimentOut:
    """running -> paused."""
    return _move(key, "pause")


@bp.post("/v1/experiments/<key>/stop")
@endpoint("Stop for good: nobody is enrolled any more", roles=EDITOR, tag="experiments", response=ExperimentOut, errors=(404, 409), path=KEY)
def stop(key: str) -> ExperimentOut:
    """running or paused -> stopped."""
    return _move(key, "stop")
