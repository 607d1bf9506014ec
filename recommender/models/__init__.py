"""The model registry: algorithm name -> implementation."""
from __future__ import annotations

from typing import Any, Mapping

from recommender.base import Recommender
from recommender.models.als import ALS
from recommender.models.bpr import BPR
from recommender.models.ease import EASE
from recommender.models.item_knn import ItemKNN
from recommender.models.popularity import Popularity

ALGORITHMS: dict[str, type[Recommender]] = {
    "als": ALS,
    "bpr": BPR,
    "ease": EASE,
    "item_knn": ItemKNN,
    "popularity": Popularity,
}
# What a training request that names no algorithm trains.
DEFAULT_ALGORITHM = "als"


def make_recommender(algorithm: str, params: Mapping[str, Any] | None = None) -> Recommender:
    """A fresh model of the named algorithm with validated parameters."""
    try:
        cls = ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, not {algorithm!r}") from None
    return cls(params)
