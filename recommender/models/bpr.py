"""Bayesian personalised ranking (implicit's CPU implementation)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking

from recommender.models.factors import FactorModel
from recommender.search_space import Dimension, Range


@dataclass(frozen=True)
class BPRParams:
    """BPR settings."""

    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    refit_iterations: int = 10
    random_state: int = 42

    def __post_init__(self) -> None:
        if not 0 <= self.random_state < 2**32:
            raise ValueError("random_state must be between 0 and 2**32 - 1")
        if not 1 <= self.factors <= 1024:
            raise ValueError("factors must be between 1 and 1024")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if self.regularization < 0:
            raise ValueError("regularization cannot be negative")
        if not 1 <= self.iterations <= 5000:
            raise ValueError("iterations must be between 1 and 5000")
        if not 0 <= self.refit_iterations <= 1000:
            raise ValueError("refit_iterations must be between 0 and 1000")


class BPR(FactorModel):
    """BPR; implicit cannot fold users in, so a new user is the confidence-weighted mean of their items' factors."""

    name = "bpr"
    params_type = BPRParams
    DIVERGED_HINT = "lower learning_rate (the default is 0.01)"
    SEARCH_SPACE: ClassVar[Mapping[str, Dimension]] = {
        "factors": Range(16, 256, log=True),
        "learning_rate": Range(0.001, 0.1, log=True),
        "regularization": Range(0.0001, 0.1, log=True),
        "iterations": Range(20, 300, log=True),
    }

    def _new_model(self) -> Any:
        p = self.params
        return BayesianPersonalizedRanking(
            factors=p.factors,
            learning_rate=p.learning_rate,
            regularization=p.regularization,
            iterations=p.iterations,
            random_state=p.random_state,
        )

    def fold_in(self, row: sp.csr_matrix) -> np.ndarray:
        """The weighted mean of the row's item factors (the bias column stays 1)."""
        weights = row.data / row.data.sum()
        user = np.asarray(weights @ self.item_factors[row.indices], dtype=np.float32)
        user[-1] = 1.0
        return user
