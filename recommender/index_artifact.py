"""A serving index as an .npz artifact: the model's arrays, ids, popularity and, for big catalogues, the graphs and searched-ahead lists."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from recommender.ann import AnnSettings, VectorIndex
from recommender.artifacts import dumps, loads, pack_strings, unpack_strings
from recommender.matrix import MatrixSettings
from recommender.models import make_recommender

if TYPE_CHECKING:
    from recommender.index import ServingIndex


def encode(index: ServingIndex, extra_meta: dict[str, Any] | None = None) -> bytes:
    """The artifact's bytes, with no pickled objects."""
    arrays = {f"model_{k}": v for k, v in index.model.to_arrays().items()}
    ann_meta = None
    if index.ann is not None and index.similar_ann is not None:
        # The inner-product index holds the item factors verbatim: store them once.
        del arrays["model_item_factors"]
        arrays["ann_users"], arrays["ann_items"] = index.ann.to_array(), index.similar_ann.to_array()
        ann_meta = index.ann.settings.stored()
        if index.ranked_users is not None and index.ranked_rows is not None:
            arrays["ranked_users"], arrays["ranked_rows"] = index.ranked_users, index.ranked_rows
            if index.ranked_scores is not None:
                arrays["ranked_scores"] = index.ranked_scores
    arrays["item_ids"], arrays["item_offsets"] = pack_strings(index.item_ids)
    arrays["user_ids"], arrays["user_offsets"] = pack_strings(index.user_ids)
    arrays["popularity"] = index.popularity
    meta = {
        "version": index.version,
        "algorithm": index.algorithm,
        "params": index.model.describe_params(),
        "settings": {**asdict(index.settings), "weights": dict(index.settings.weights)},
        "ann": ann_meta,
        **(extra_meta or {}),
    }
    return dumps(arrays, meta)


def decode(data: bytes) -> dict[str, Any]:
    """The fields of the ServingIndex that `encode` wrote."""
    arrays, meta = loads(data)
    model = make_recommender(meta["algorithm"], meta["params"])
    model_arrays = {k[len("model_") :]: v for k, v in arrays.items() if k.startswith("model_")}
    ann = similar_ann = None
    if meta.get("ann"):
        settings = AnnSettings(**meta["ann"])
        ann = VectorIndex.from_array(arrays["ann_users"], settings)
        similar_ann = VectorIndex.from_array(arrays["ann_items"], settings)
        model_arrays["item_factors"] = ann.vectors()
    model.load_arrays(model_arrays)
    return {
        "version": meta["version"],
        "algorithm": meta["algorithm"],
        "model": model,
        "settings": MatrixSettings(**meta["settings"]),
        "item_ids": unpack_strings(arrays["item_ids"], arrays["item_offsets"]),
        "user_ids": unpack_strings(arrays["user_ids"], arrays["user_offsets"]),
        "popularity": arrays["popularity"],
        "ann": ann,
        "similar_ann": similar_ann,
        "ranked_users": arrays.get("ranked_users"),
        "ranked_rows": arrays.get("ranked_rows"),
        "ranked_scores": arrays.get("ranked_scores"),
    }
