"""Recommendations, similar items and popular items (storefront)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from service.errors import NotFound
from service.http.endpoint import STOREFRONT, endpoint, services
from service.http.request_input import QUERY_ATTRIBUTES_RULE
from service.http.schemas.catalogue import PopularItems, PopularQuery, Recommendations, RecommendQuery, SimilarItems, SimilarQuery
from service.timestamps import server_time
from service.usecases import recommendations

bp = Blueprint("recommendations", __name__)


# These answer plain dicts in their declared models' shape (see endpoint._serialise).
def _items(pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"item_id": i, "score": s} for i, s in pairs]


@bp.get("/v1/users/<id:user_id>/recommendations")
@endpoint(
    f"'You may like' for a user; with experiment=, from the user's arm, and attr.NAME=value parameters feed its targeting ({QUERY_ATTRIBUTES_RULE})", roles=STOREFRONT, tag="recommendations", query=RecommendQuery, response=Recommendations, errors=(404,),
    path={"user_id": "id"}, records=True, query_attributes=True,
)
def for_user(user_id: str, query: RecommendQuery, attributes: dict[str, str]) -> dict[str, Any]:
    """Never a purchased, unavailable or excluded item. With ?experiment=, `attr.NAME=value` parameters
    are the request attributes its targeting reads, as on the assignment endpoint; without one they are
    checked the same way (bounded names and values) and otherwise unused."""
    svc = services()
    arm = reason = None
    if query.experiment is None:
        answer = recommendations.for_user(svc.db, svc.models, user_id, query.n, query.category, query.excluded())
    else:
        answer, arm, reason = recommendations.in_experiment(
            svc.db, svc.models, svc.experiment_cache, query.experiment, user_id, query.n, query.category, query.excluded(), server_time(), attributes
        )
    return {
        "user_id": user_id, "strategy": answer.strategy, "model_version": answer.model_version, "items": _items(answer.items),
        "experiment": query.experiment, "arm": arm, "reason": reason,
    }


@bp.get("/v1/items/popular")
@endpoint("The most popular available items", roles=STOREFRONT, tag="recommendations", query=PopularQuery, response=PopularItems)
def popular(query: PopularQuery) -> dict[str, Any]:
    """Distinct users per item, optionally within a category."""
    svc = services()
    answer = recommendations.popular(svc.db, svc.models, query.n, query.category)
    return {"model_version": answer.model_version, "items": _items(answer.items)}


@bp.get("/v1/items/<id:item_id>/similar")
@endpoint("Items similar to an item", roles=STOREFRONT, tag="recommendations", query=SimilarQuery, response=SimilarItems, errors=(404,), path={"item_id": "id"})
def similar(item_id: str, query: SimilarQuery) -> dict[str, Any]:
    """Nearest items in the active model's space."""
    svc = services()
    answer = recommendations.similar(svc.db, svc.models, item_id, query.n)
    if answer is None:
        raise NotFound("item", item_id)
    return {"item_id": item_id, "strategy": answer.strategy, "model_version": answer.model_version, "items": _items(answer.items)}
