"""Layers: which experiments share an audience, and who owns which range (editor, analyst)."""
from __future__ import annotations

from flask import Blueprint

from service.http.endpoint import READ_EXPERIMENTS, endpoint, services
from service.http.schemas.users import LayerOut
from service.usecases import experiments

bp = Blueprint("layers", __name__)


@bp.get("/v1/layers/<layer>")
@endpoint("The ranges running and paused experiments own in a layer, and the free share", roles=READ_EXPERIMENTS, tag="experiments", response=LayerOut, path={"layer": "key"})
def show(layer: str) -> LayerOut:
    """A layer's ranges."""
    return LayerOut.model_validate(experiments.layer(services().db, layer))
