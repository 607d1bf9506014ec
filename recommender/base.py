"""The contract every recommendation model follows."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict
from typing import Any, ClassVar, Mapping

import numpy as np
import scipy.sparse as sp


class Recommender(ABC):
    """A model that scores items for users and for other items.

    Scores are comparable within one call only. Known users are rows of the
    training matrix; anyone else is scored from a row of their interactions.
    """

    name: ClassVar[str]
    params_type: ClassVar[type]

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        try:
            self.params = self.params_type(**(params or {}))
        except TypeError as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    def describe_params(self) -> dict[str, Any]:
        """The validated parameters as plain values."""
        return asdict(self.params)

    @abstractmethod
    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, warm_start: bool = False) -> None:
        """Learn from a users x items confidence matrix; warm_start continues from the current state."""

    @abstractmethod
    def score_users(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Scores over all items for known users (rows of the training matrix)."""

    @abstractmethod
    def score_row(self, row: sp.csr_matrix) -> np.ndarray:
        """Scores over all items for someone described only by a row of interactions (fold-in)."""

    @abstractmethod
    def similar(self, item: int) -> np.ndarray:
        """Similarity of every item to `item`."""

    @abstractmethod
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The learned state as plain arrays."""

    @abstractmethod
    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore the learned state saved by to_arrays."""

    @property
    def needs_training_matrix(self) -> bool:
        """Whether serving known users needs their training rows (item-item models do)."""
        return False
