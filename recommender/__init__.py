"""Implicit-feedback recommendations: matrix building, training, evaluation and serving."""
from recommender.base import Recommender
from recommender.models import ALGORITHMS, make_recommender

__all__ = ["ALGORITHMS", "Recommender", "make_recommender"]
