"""Assignment: which arm a user is in (storefront)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint

from service.http.endpoint import STOREFRONT, endpoint, services
from service.http.request_input import QUERY_ATTRIBUTES_RULE
from service.http.schemas.assignment import AssignmentOut, AssignmentQuery, AssignmentsIn, AssignmentsOut
from service.timestamps import server_time
from service.usecases.assignment import assign, assign_many

bp = Blueprint("assignments", __name__)


def _when(ts: datetime | None) -> float:
    return ts.timestamp() if ts is not None else server_time()


@bp.get("/v1/experiments/<key>/assignment")
@endpoint(
    f"A user's sticky arm, recording the first exposure; attr.NAME=value parameters feed targeting ({QUERY_ATTRIBUTES_RULE})",
    roles=STOREFRONT,
    tag="assignment",
    query=AssignmentQuery,
    response=AssignmentOut,
    errors=(404,),
    path={"key": "key"},
    query_attributes=True,
    records=True,
)
def one(key: str, query: AssignmentQuery, attributes: dict[str, str]) -> dict[str, Any]:
    """Assign one user in one experiment; the use case's dict is already in AssignmentOut's shape (see endpoint._serialise)."""
    svc = services()
    return assign(svc.db, svc.experiment_cache, key, query.user_id, _when(query.timestamp), attributes)


@bp.post("/v1/assignments")
@endpoint("A user's arms in several experiments", roles=STOREFRONT, tag="assignment", body=AssignmentsIn, response=AssignmentsOut, errors=(404,))
def many(body: AssignmentsIn) -> dict[str, Any]:
    """Assign one user in each experiment asked for, in order."""
    svc = services()
    return {"assignments": assign_many(svc.db, svc.experiment_cache, body.experiments, body.user_id, _when(body.timestamp), body.attributes)}
