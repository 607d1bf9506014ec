"""Alternating least squares for implicit feedback (implicit's CPU implementation)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from recommender.models.factors import FactorModel


@dataclass(frozen=True)
class ALSParams:
    """ALS settings; `refit_iterations` are the warm-started passes over the full data after evaluation."""

    factors: int = 64
    regularization: float = 10.0
    iterations: int = 15
    refit_iterations: int = 2
    random_state: int = 42

    def __post_init__(self) -> None:
        if not 1 <= self.factors <= 1024:
            raise ValueError("factors must be between 1 and 1024")
        if self.regularization < 0:
            raise ValueError("regularization cannot be negative")
        if not 1 <= self.iterations <= 500:
            raise ValueError("iterations must be between 1 and 500")
        if not 0 <= self.refit_iterations <= 100:
            raise ValueError("refit_iterations must be between 0 and 100")


class ALS(FactorModel):
    """Hu, Koren and Volinsky's implicit ALS; unknown users fold in with implicit's recalculate_user."""

    name = "als"
    params_type = ALSParams

    def _new_model(self) -> Any:
        p = self.params
        return AlternatingLeastSquares(
            factors=p.factors,
            regularization=p.regularization,
            iterations=p.iterations,
            random_state=p.random_state,
            calculate_training_loss=False,
        )

    def score_row(self, row: sp.csr_matrix) -> np.ndarray:
        """Solve the user's least-squares problem against fixed item factors, then score."""
        user = self._model.recalculate_user(0, row)
        return self.item_factors @ user
