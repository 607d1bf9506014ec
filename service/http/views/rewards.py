"""Reward-earning actions and the points ledger (storefront)."""
from __future__ import annotations

import time

from flask import Blueprint

from service.http.endpoint import STOREFRONT, endpoint, services
from service.http.schemas.experiments import LedgerOut, RewardIn, RewardOut
from service.usecases import rewards
from service.usecases.rewards import ActionIn

bp = Blueprint("rewards", __name__)


@bp.post("/v1/rewards")
@endpoint("Apply the user's arm's reward schedule to an action, idempotent by action_id", roles=STOREFRONT, tag="rewards", body=RewardIn, response=RewardOut, errors=(404, 409))
def earn(body: RewardIn) -> RewardOut:
    """Decide, record and answer one action."""
    svc = services()
    ts = body.timestamp.timestamp() if body.timestamp else time.time()
    action = ActionIn(body.action_id, body.experiment, body.user_id, body.action, body.value, ts)
    return RewardOut.model_validate(rewards.reward(svc.db, svc.experiment_cache, action))


@bp.get("/v1/experiments/<key>/users/<id:user_id>/rewards")
@endpoint("A user's points balance and reward history", roles=STOREFRONT, tag="rewards", response=LedgerOut, errors=(404,), path={"key": "key", "user_id": "id"})
def history(key: str, user_id: str) -> LedgerOut:
    """The ledger, oldest first."""
    return LedgerOut.model_validate(rewards.ledger(services().db, key, user_id))
