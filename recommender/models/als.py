"""Alternating least squares for implicit feedback (implicit's CPU implementation)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recommender.models.factors import FactorModel
from recommender.search_space import Dimension, Range


@dataclass(frozen=True)
class ALSParams:
    """ALS settings; `refit_iterations` are the warm-started passes over the full data after evaluation."""

    factors: int = 64
    regularization: float = 10.0
    iterations: int = 15
    refit_iterations: int = 2
    random_state: int = 42
    # implicit's `alpha`: every confidence is multiplied by it, so it sets how much more
    # an observed cell counts than an unobserved one; often the setting that matters most.
    confidence_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.random_state < 2**32:
            raise ValueError("random_state must be between 0 and 2**32 - 1")
        if not 1 <= self.factors <= 1024:
            raise ValueError("factors must be between 1 and 1024")
        if self.regularization < 0:
            raise ValueError("regularization cannot be negative")
        if not 1 <= self.iterations <= 500:
            raise ValueError("iterations must be between 1 and 500")
        if not 0 <= self.refit_iterations <= 100:
            raise ValueError("refit_iterations must be between 0 and 100")
        if not 0 < self.confidence_scale <= 1000:
            raise ValueError("confidence_scale must be positive and at most 1000")


class ALS(FactorModel):
    """Hu, Koren and Volinsky's implicit ALS; unknown users fold in with implicit's recalculate_user."""

    name = "als"
    params_type = ALSParams
    DIVERGED_HINT = "raise regularization or lower confidence_scale"
    SEARCH_SPACE: ClassVar[Mapping[str, Dimension]] = {
        "factors": Range(16, 256, log=True),
        "regularization": Range(0.01, 100.0, log=True),
        "iterations": Range(5, 30),
        "confidence_scale": Range(0.1, 10.0, log=True),
    }
    REFIT_SHARE = 0.01

    def _new_model(self) -> Any:
        p = self.params
        return AlternatingLeastSquares(
            factors=p.factors,
            regularization=p.regularization,
            iterations=p.iterations,
            random_state=p.random_state,
            alpha=p.confidence_scale,
            calculate_training_loss=False,
        )

    def absorb(self, user_items: sp.csr_matrix, users: np.ndarray, held_out_share: float) -> None:
        """Re-solve only the evaluated users when what they held out could not have moved the item factors.

        Above REFIT_SHARE (small catalogues, where every user was sampled) a
        warm refit is worth its cost; below it, the exact least-squares step
        for those users gives the model a bare fit on everything would.
        """
        if held_out_share > self.REFIT_SHARE or self._model is None:
            super().absorb(user_items, users, held_out_share)
            return
        model = self._model
        with threadpool_limits(1, "blas"):
            # Items whose every interaction was held out ended the fit at zero, and the users' step below
            # would learn nothing from them: solve them first against the users' factors (implicit caches
            # Y^T Y, so it is reset). An item only users without other interactions touched stays at zero,
            # where serving falls back to popularity.
            touched = np.bincount(user_items.indices, minlength=user_items.shape[1]) > 0
            unfitted = np.flatnonzero(~model.item_factors.any(axis=1) & touched)
            if len(unfitted):
                model.item_factors[unfitted] = model.recalculate_item(unfitted, user_items[:, unfitted].T.tocsr())
                model._YtY = None
                self._norms = None
            model.user_factors[users] = model.recalculate_user(users, user_items[users])

    def fold_in(self, row: sp.csr_matrix) -> np.ndarray:
        """Solve the user's least-squares problem against fixed item factors."""
        return np.asarray(self._model.recalculate_user(0, row), dtype=np.float32)
