"""Catalogue items (storefront)."""
from __future__ import annotations

from flask import Blueprint

from service.http.endpoint import STOREFRONT, endpoint, services
from service.http.schemas.catalogue import ItemBatch, ItemOut, Upserted
from service.usecases import catalogue

bp = Blueprint("items", __name__)


@bp.post("/v1/items")
@endpoint("Upsert catalogue items", roles=STOREFRONT, tag="catalogue", body=ItemBatch, response=Upserted, batch_field="items")
def upsert(body: ItemBatch) -> Upserted:
    """Insert or update a batch of items in one transaction."""
    return Upserted(upserted=catalogue.upsert_items(services().db, [item.model_dump(exclude_unset=True) for item in body.items]))


@bp.get("/v1/items/<id:item_id>")
@endpoint("One catalogue item", roles=STOREFRONT, tag="catalogue", response=ItemOut, errors=(404,), path={"item_id": "id"})
def get(item_id: str) -> ItemOut:
    """Return one item."""
    return ItemOut.model_validate(catalogue.get_item(services().db, item_id))
