"""Shared behaviour of latent-factor models: dot-product scores and cosine similarity."""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp
from implicit.recommender_base import ModelFitError
from threadpoolctl import threadpool_limits

from recommender.base import CannotTrain, FitStopped, Recommender, best_first

# A score bound below this is no ranking. A healthy fit's best scores are of the order of 0.1 to 1;
# too strong a regularization sends every factor to zero, which ALS cannot leave (on 300 users and
# 200 items the bound fell from 0.16 at regularization 10 to 5e-28 at 1,000, and to 0 beyond).
COLLAPSED_SCORE = 1e-10


class FactorModel(Recommender):
    """A model whose scores are user factors times item factors."""

    REFITS = True
    # What to change when the factors diverge to NaN, in the person's words.
    DIVERGED_HINT = "lower its step or raise regularization"
    _model: Any = None

    @abstractmethod
    def _new_model(self) -> Any:
        """A fresh, unfitted implicit model with this model's parameters."""

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, warm_start: bool = False) -> None:
        """Fit with implicit; warm_start keeps the current factors and runs `refit_iterations` more."""
        # implicit parallelises itself; a second BLAS thread pool only contends with it. Its model
        # checks the BLAS threads when made (faiss brings an OpenMP BLAS that OPENBLAS_NUM_THREADS
        # does not reach), so the model is made inside the limit too, or its warning fills the log.
        with threadpool_limits(1, "blas"):
            if warm_start and self._model is not None:
                self._model.iterations = self.params.refit_iterations
            else:
                self._model = self._new_model()
            try:
                self._model.fit(user_items, show_progress=show_progress, callback=self._between_iterations)
            except ModelFitError:
                # implicit checks its factors for NaN after a fit. A refusal, like any setting the data
                # cannot train with, so that a tuning search counts the trial failed and goes on.
                raise CannotTrain(f"{self.name}: the fit diverged (its factors became NaN); {self.DIVERGED_HINT}") from None
        self._norms = None
        self._refuse_collapsed()

    def _refuse_collapsed(self) -> None:
        """Refuse factors shrunk to about zero: every score would be 0 or rounding noise (a regularization
        of 1e9 gives exact zeros), served in catalogue order under a personal label."""
        users, items = self.user_factors, self.item_factors
        if not (len(users) and len(items)):
            return
        largest = float(np.linalg.norm(users, axis=1).max()) * float(np.linalg.norm(items, axis=1).max())
        if largest < COLLAPSED_SCORE:
            raise CannotTrain(
                f"{self.name}: the fit shrank every factor to about zero (no score can exceed {largest:.1g}), "
                "so it ranks nothing; lower regularization, or give the events more weight (a longer half_life_days, "
                "larger event weights or alpha)"
            )

    def _between_iterations(self, *_progress: Any) -> None:
        """implicit calls this after each iteration: a fit of hundreds of them stops when asked, not at its end."""
        if self.should_stop is not None and self.should_stop():
            raise FitStopped(f"{self.name}: the fit was stopped")

    def placed_items(self) -> np.ndarray:
        """Items with factors: a row left at zero (its every interaction held out, with users the fit could not place either) scores 0 against anyone."""
        return np.asarray(self.item_factors.any(axis=1))

    def placed_users(self) -> np.ndarray:
        """Users with factors (see placed_items)."""
        return np.asarray(self.user_factors.any(axis=1))

    @property
    def user_factors(self) -> np.ndarray:
        return np.asarray(self._model.user_factors)

    @property
    def item_factors(self) -> np.ndarray:
        return np.asarray(self._model.item_factors)

    def score_users(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Dot products of the users' factors with every item's."""
        return self.user_factors[users] @ self.item_factors.T

    def top_for_users(self, users: np.ndarray, user_items: sp.csr_matrix, k: int, chunk: int = 256) -> np.ndarray:
        """implicit's own top-k: scoring and selection in compiled code, without a users x items array."""
        k = min(k, user_items.shape[1])  # implicit pads a longer list with item 0
        if len(users) == 0:
            return np.zeros((0, k), dtype=np.int64)
        ids, _scores = self._model.recommend(users, user_items[users], N=k, filter_already_liked_items=True)
        return np.asarray(ids, dtype=np.int64)

    def best_for_user(self, user: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A matrix-vector product and a partition: for one user, faster than implicit's batched top-k."""
        scores = self.item_factors @ self.user_factors[user]
        order = best_first(scores, None, k)
        return order, scores[order]

    @abstractmethod
    def fold_in(self, row: sp.csr_matrix) -> np.ndarray:
        """Factors for someone described only by a row of interactions."""

    def score_row(self, row: sp.csr_matrix) -> np.ndarray:
        """Scores of every item for the folded-in factors of `row`."""
        return self.item_factors @ self.fold_in(row)

    def user_vector(self, user: int) -> np.ndarray:
        """A known user's factors."""
        return self.user_factors[user]

    @property
    def item_norms(self) -> np.ndarray:
        """Each item's factor norm (never zero), computed once."""
        norms = getattr(self, "_norms", None)
        if norms is None:
            norms = self._norms = np.linalg.norm(self.item_factors, axis=1) + 1e-12
        return norms

    def similar(self, item: int) -> np.ndarray:
        """Cosine similarity of item factors."""
        return self.similar_to(item, None)

    def similar_to(self, item: int, rows: np.ndarray | None) -> np.ndarray:
        """Cosine similarity of `item` to the items in `rows` (all when None)."""
        factors, norms = self.item_factors, self.item_norms
        pick = slice(None) if rows is None else rows  # a slice is a view: no copy of every factor
        return (factors[pick] @ factors[item]) / (norms[pick] * norms[item])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """User and item factors."""
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Rebuild the implicit model around saved factors."""
        # Serving never fits. A worker's request threads see faiss's OpenMP build of OpenBLAS with
        # the machine's thread count (the limit set at start-up holds only in the thread that set it),
        # and implicit's constructor warns about it; limited here, as for a fit, it has no cause to.
        with threadpool_limits(1, "blas"):
            self._model = self._new_model()
        self._model.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self._model.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self._norms = None
