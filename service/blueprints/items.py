"""Catalogue items (storefront)."""
from __future__ import annotations

from flask import Blueprint

from service.api import STOREFRONT, endpoint
from service.errors import not_found
from service.schemas.catalogue import ItemBatch, ItemOut, Upserted
from service.schemas.common import iso
from service.state import services
from service.stores.catalogue import get_item, upsert_items

bp = Blueprint("items", __name__)


@bp.post("/v1/items")
@endpoint("Upsert catalogue items", roles=STOREFRONT, tag="catalogue", body=ItemBatch, response=Upserted, batch_field="items")
def upsert(body: ItemBatch) -> Upserted:
    """Insert or update a batch of items in one transaction."""
    entries = [item.model_dump(exclude_unset=True) for item in body.items]
    return Upserted(upserted=upsert_items(services().db, entries))


@bp.get("/v1/items/<item_id>")
@endpoint("One catalogue item", roles=STOREFRONT, tag="catalogue", response=ItemOut, errors=(404,), path={"item_id": "id"})
def get(item_id: str) -> ItemOut:
    """Return one item."""
    row = get_item(services().db, item_id)
    if row is None:
        raise not_found("item", item_id)
    return ItemOut(
        item_id=row.item_id,
        title=row.title,
        category=row.category,
        available=row.available,
        attributes=row.attributes or {},
        updated_at=iso(row.updated_at) or "",
    )
