"""Experiments: define, change while draft, start, pause, stop (editor; analysts read)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from service.api import EDITOR, READ_EXPERIMENTS, endpoint
from service.experiment_codec import to_json
from service.schemas.experiments import ExperimentFilter, ExperimentIn, ExperimentList, ExperimentOut, ExperimentPatch
from service.state import services
from service.stores import experiments as store

bp = Blueprint("experiments", __name__)
KEY = {"key": "key"}


def _fields(body: ExperimentIn | ExperimentPatch) -> dict[str, Any]:
    """The body as stored JSON: only the fields the client sent, with every arm complete."""
    fields = body.model_dump(mode="json", exclude_unset=True)
    for arm in fields.get("arms") or []:
        arm.setdefault("weight", 1.0)
        arm.setdefault("payload", {})
        arm.setdefault("schedule", None)
    return fields


@bp.post("/v1/experiments")
@endpoint("Create an experiment as a draft", roles=EDITOR, tag="experiments", body=ExperimentIn, response=ExperimentOut, status=201, errors=(409,))
def create(body: ExperimentIn) -> ExperimentOut:
    """Validate the whole definition, then store it."""
    fields = {"description": "", "type": "ab", "traffic": 1.0, "bandit": None, **_fields(body)}
    return ExperimentOut.model_validate(to_json(store.create(services().db, fields)))


@bp.get("/v1/experiments")
@endpoint("List experiments, newest first", roles=READ_EXPERIMENTS, tag="experiments", query=ExperimentFilter, response=ExperimentList)
def index(query: ExperimentFilter) -> ExperimentList:
    """List experiments."""
    return ExperimentList(experiments=[ExperimentOut.model_validate(to_json(r)) for r in store.list_all(services().db, query.status)])


@bp.get("/v1/experiments/<key>")
@endpoint("One experiment", roles=READ_EXPERIMENTS, tag="experiments", response=ExperimentOut, errors=(404,), path=KEY)
def show(key: str) -> ExperimentOut:
    """Show one experiment."""
    return ExperimentOut.model_validate(to_json(store.get(services().db, key)))


@bp.patch("/v1/experiments/<key>")
@endpoint("Change an experiment (arms, weights, metrics, type and bandit only while draft)", roles=EDITOR, tag="experiments", body=ExperimentPatch, response=ExperimentOut, errors=(404, 409), path=KEY)
def change(key: str, body: ExperimentPatch) -> ExperimentOut:
    """Apply the fields sent."""
    return ExperimentOut.model_validate(to_json(store.patch(services().db, key, _fields(body))))


@bp.delete("/v1/experiments/<key>")
@endpoint("Delete a draft", roles=EDITOR, tag="experiments", status=204, errors=(404, 409), path=KEY)
def remove(key: str) -> Response:
    """Delete a draft experiment."""
    store.remove(services().db, key)
    return Response(status=204)


def _move(key: str, action: str) -> ExperimentOut:
    return ExperimentOut.model_validate(to_json(store.move(services().db, key, action)))


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
