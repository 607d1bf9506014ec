"""Reward-earning actions and the points ledger (storefront)."""
from __future__ import annotations

from flask import Blueprint

from service.http.endpoint import STOREFRONT, endpoint, services
from service.http.schemas.rewards import LedgerOut, LedgerQuery, RewardIn, RewardOut
from service.timestamps import server_time
from service.usecases import rewards
from service.usecases.rewards import ActionIn

bp = Blueprint("rewards", __name__)


@bp.post("/v1/rewards")
@endpoint(
    "Apply the user's arm's reward schedule to an action, idempotent by action_id", roles=STOREFRONT, tag="rewards", body=RewardIn, response=RewardOut,
    errors=(404, 409), error_text={409: "The action_id was already used for another user or experiment: an id names one action in the whole service"},
)
def earn(body: RewardIn) -> RewardOut:
    """Decide, record and answer one action."""
    svc = services()
    ts = body.timestamp.timestamp() if body.timestamp else server_time()
    action = ActionIn(body.action_id, body.experiment, body.user_id, body.action, body.value, ts)
    return RewardOut.model_validate(rewards.reward(svc.db, svc.experiment_cache, action))


@bp.get("/v1/experiments/<key>/users/<id:user_id>/rewards")
@endpoint(
    "A user's points balance and reward history, oldest first, in pages of up to 1,000 actions", roles=STOREFRONT, tag="rewards",
    query=LedgerQuery, response=LedgerOut, errors=(404,), path={"key": "key", "user_id": "id"},
)
def history(key: str, user_id: str, query: LedgerQuery) -> LedgerOut:
    """A page of the ledger, oldest first."""
    return LedgerOut.model_validate(rewards.ledger(services().db, key, user_id, query.limit, query.cursor))
