"""Epsilon-greedy: explore uniformly with probability epsilon, otherwise play the best mean."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from bandits.base import ArmStats, Policy, draw_rows, split_ties


class EpsilonGreedy(Policy):
    """Untried arms count as best, so every arm is tried before the greedy choice settles."""

    name: ClassVar[str] = "epsilon_greedy"

    def _allocation(self, stats: ArmStats) -> np.ndarray:
        value = np.where(stats.pulls == 0, np.inf, stats.means())
        greedy = split_ties(value >= value.max(axis=-1, keepdims=True))
        k = stats.pulls.shape[-1]
        return self.epsilon / k + (1.0 - self.epsilon) * greedy

    def probabilities(self, stats: ArmStats) -> np.ndarray:
        """epsilon / K on every arm, plus 1 - epsilon shared by the best ones."""
        return self._allocation(stats)

    def explores_every_arm(self) -> bool:
        """epsilon / K on every arm, while epsilon is above 0."""
        return self.epsilon > 0

    def sample(self, stats: ArmStats, rng: np.random.Generator) -> np.ndarray:
        """Vectorised over rows."""
        return draw_rows(self._allocation(stats), rng)
