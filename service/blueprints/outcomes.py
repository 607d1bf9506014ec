"""Outcomes reported by storefronts; they feed results and bandits."""
from __future__ import annotations

import time

from flask import Blueprint

from service.api import STOREFRONT, endpoint
from service.errors import ApiError
from service.schemas.experiments import OutcomeBatch, OutcomesAccepted
from service.state import services
from service.stores.outcomes import check_batch, record

bp = Blueprint("outcomes", __name__)


@bp.post("/v1/outcomes")
@endpoint("Report outcomes, idempotent by outcome_id", roles=STOREFRONT, tag="outcomes", body=OutcomeBatch, response=OutcomesAccepted, batch_field="outcomes")
def report(body: OutcomeBatch) -> OutcomesAccepted:
    """Validate the whole batch against the experiments it names, then store it in one transaction."""
    svc = services()
    now = time.time()
    outcomes = [{**o.model_dump(exclude={"timestamp"}), "ts": o.timestamp.timestamp() if o.timestamp else now} for o in body.outcomes]
    definitions = {}
    for key in {o["experiment"] for o in outcomes}:
        try:
            definitions[key] = svc.definitions.current(svc.db, key)[0].experiment
        except ApiError:  # unknown experiments are reported per index by check_batch
            continue
    check_batch(outcomes, definitions)
    counts = record(svc.db, outcomes, definitions)
    return OutcomesAccepted(accepted=counts.accepted, duplicates=counts.duplicates, ignored=counts.ignored)
