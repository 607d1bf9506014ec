"""Recommendations, similar items and popular items (storefront)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from service import recommending
from service.api import STOREFRONT, KeyCheck, endpoint
from service.errors import not_found
from service.schemas.catalogue import PopularItems, PopularQuery, Recommendations, RecommendQuery, SimilarItems, SimilarQuery
from service.state import services

bp = Blueprint("recommendations", __name__)


# These answer plain dicts in their declared models' shape (see api._serialise).
def _items(pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"item_id": i, "score": s} for i, s in pairs]


@bp.get("/v1/users/<user_id>/recommendations")
@endpoint(
    "'You may like' for a user",
    roles=STOREFRONT,
    tag="recommendations",
    query=RecommendQuery,
    response=Recommendations,
    path={"user_id": "id"},
    key_in_first_read=True,
)
def for_user(user_id: str, query: RecommendQuery, api_key: KeyCheck) -> dict[str, Any]:
    """Never a purchased, unavailable or excluded item."""
    svc = services()
    answer = recommending.for_user(svc.db, svc.models, user_id, query.n, query.category, query.excluded(), api_key)
    return {"user_id": user_id, "strategy": answer.strategy, "model_version": answer.model_version, "items": _items(answer.items)}


@bp.get("/v1/items/popular")
@endpoint(
    "The most popular available items",
    roles=STOREFRONT,
    tag="recommendations",
    query=PopularQuery,
    response=PopularItems,
    key_in_first_read=True,
)
def popular(query: PopularQuery, api_key: KeyCheck) -> dict[str, Any]:
    """Distinct users per item, optionally within a category."""
    svc = services()
    answer = recommending.popular(svc.db, svc.models, query.n, query.category, api_key)
    return {"model_version": answer.model_version, "items": _items(answer.items)}


@bp.get("/v1/items/<item_id>/similar")
@endpoint(
    "Items similar to an item",
    roles=STOREFRONT,
    tag="recommendations",
    query=SimilarQuery,
    response=SimilarItems,
    errors=(404,),
    path={"item_id": "id"},
    key_in_first_read=True,
)
def similar(item_id: str, query: SimilarQuery, api_key: KeyCheck) -> dict[str, Any]:
    """Nearest items in the active model's space."""
    svc = services()
    answer = recommending.similar(svc.db, svc.models, item_id, query.n, api_key)
    if answer is None:
        raise not_found("item", item_id)
    return {"item_id": item_id, "strategy": answer.strategy, "model_version": answer.model_version, "items": _items(answer.items)}
