"""Outcomes reported by storefronts; they feed results and bandits."""
from __future__ import annotations

from flask import Blueprint

from service.http.endpoint import STOREFRONT, endpoint, services
from service.http.schemas.outcomes import OutcomeBatch, OutcomesAccepted
from service.timestamps import server_time
from service.usecases import outcomes

bp = Blueprint("outcomes", __name__)


@bp.post("/v1/outcomes")
@endpoint("Report outcomes, idempotent by outcome_id", roles=STOREFRONT, tag="outcomes", body=OutcomeBatch, response=OutcomesAccepted, batch_field="outcomes")
def report(body: OutcomeBatch) -> OutcomesAccepted:
    """Validate the whole batch against the experiments it names, then store it in one transaction."""
    svc = services()
    now = server_time()
    batch = [{**o.model_dump(exclude={"timestamp"}), "ts": o.timestamp.timestamp() if o.timestamp else now} for o in body.outcomes]
    counts = outcomes.report(svc.db, svc.experiment_cache, batch)
    return OutcomesAccepted(accepted=counts.accepted, duplicates=counts.duplicates, ignored=counts.ignored)
