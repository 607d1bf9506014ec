"""Planning before launch (editor, analyst)."""
from __future__ import annotations

from flask import Blueprint

from service.http.endpoint import READ_EXPERIMENTS, endpoint
from service.http.schemas.results import PlanIn, PlanOut
from service.usecases import planning

bp = Blueprint("plans", __name__)


@bp.post("/v1/plans/sample-size")
@endpoint("Users per arm, total and days needed to detect an effect", roles=READ_EXPERIMENTS, tag="results", body=PlanIn, response=PlanOut)
def sample_size(body: PlanIn) -> PlanOut:
    """Answer the sample-size question."""
    return PlanOut.model_validate(planning.plan(body.model_dump()))
