"""Behaviour events (storefront)."""
from __future__ import annotations

from flask import Blueprint

from service.http.endpoint import STOREFRONT, endpoint, services
from service.http.schemas.catalogue import EventBatch, EventsAccepted
from service.timestamps import server_time
from service.usecases.catalogue import record_events

bp = Blueprint("events", __name__)


@bp.post("/v1/events")
@endpoint("Record behaviour events, idempotent by event_id", roles=STOREFRONT, tag="catalogue", body=EventBatch, response=EventsAccepted, batch_field="events")
def record(body: EventBatch) -> EventsAccepted:
    """Validate the whole batch, then store it in one transaction."""
    now = server_time()
    rows = []
    for e in body.events:
        ts = e.get("timestamp")
        rows.append({"event_id": e["event_id"], "user_id": e["user_id"], "item_id": e["item_id"], "type": e["type"], "ts": now if ts is None else ts, "value": e.get("value")})
    accepted, duplicates = record_events(services().db, rows)
    return EventsAccepted(accepted=accepted, duplicates=duplicates)
