"""Uniform allocation: the fixed A/B split that bandits are measured against."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from bandits.base import ArmStats, Policy


class Uniform(Policy):
    """Every arm with the same probability, whatever the statistics say."""

    name: ClassVar[str] = "uniform"

    def probabilities(self, stats: ArmStats) -> np.ndarray:
        """1/K each."""
        k = stats.pulls.shape[-1]
        return np.full(k, 1.0 / k)

    def explores_every_arm(self) -> bool:
        """1/K on every arm."""
        return True

    def sample(self, stats: ArmStats, rng: np.random.Generator) -> np.ndarray:
        """Vectorised over rows."""
        rows, k = stats.pulls.shape
        return np.asarray(rng.integers(0, k, size=rows))
