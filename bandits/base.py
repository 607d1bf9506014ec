"""The policy contract: allocation probabilities from sufficient statistics.

A policy never keeps state of its own. The service stores each arm's
sufficient statistics (pulls, reward sum, reward sum of squares) in the
database and asks the policy for the probabilities with which the next user
would get each arm; the chosen arm's probability is that user's propensity.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

RewardKind = Literal["binary", "continuous"]


@dataclass(frozen=True)
class ArmStats:
    """Per-arm sufficient statistics; arrays of shape (K,) or (rows, K) for many runs at once.

    `m2`, when given, is each arm's sum of squared deviations from its mean. Rewards far
    from zero (1e9 plus a small spread) lose every digit of their variance in sumsq -
    sums^2/n, so a store that keeps m2 up to date passes it and the variance comes from it.
    """

    pulls: np.ndarray
    sums: np.ndarray
    sumsq: np.ndarray
    m2: np.ndarray | None = None

    @classmethod
    def of(cls, pulls: list[float], sums: list[float], sumsq: list[float] | None = None, m2: list[float] | None = None) -> "ArmStats":
        """Build from plain lists."""
        p = np.asarray(pulls, dtype=np.float64)
        s = np.asarray(sums, dtype=np.float64)
        q = np.asarray(sumsq if sumsq is not None else sums, dtype=np.float64)
        return cls(p, s, q, None if m2 is None else np.asarray(m2, dtype=np.float64))

    @classmethod
    def zeros(cls, rows: int, arms: int) -> "ArmStats":
        """Empty statistics for `rows` independent runs."""
        return cls(np.zeros((rows, arms)), np.zeros((rows, arms)), np.zeros((rows, arms)))

    def means(self) -> np.ndarray:
        """Mean reward per arm (0 for untried arms)."""
        return np.divide(self.sums, self.pulls, out=np.zeros_like(self.sums), where=self.pulls > 0)

    def variances(self) -> np.ndarray:
        """Unbiased sample variance per arm (0 below two pulls)."""
        n = self.pulls
        if self.m2 is not None:
            centred = np.maximum(self.m2, 0.0)
        else:
            centred = np.maximum(self.sumsq - np.divide(self.sums**2, n, out=np.zeros_like(n), where=n > 0), 0.0)
        return np.divide(centred, n - 1, out=np.zeros_like(n), where=n > 1)


class Policy(ABC):
    """Choose arms for new users; the same statistics always give the same probabilities."""

    name: ClassVar[str]

    def __init__(self, reward: RewardKind = "binary", epsilon: float = 0.1) -> None:
        if reward not in ("binary", "continuous"):
            raise ValueError(f"reward must be 'binary' or 'continuous', got {reward!r}")
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
        self.reward = reward
        self.epsilon = epsilon

    @abstractmethod
    def probabilities(self, stats: ArmStats) -> np.ndarray:
        """The probability of each arm for the next user, for 1-D statistics; sums to 1."""

    def explores_every_arm(self) -> bool:
        """Whether every arm keeps a probability above 0 whatever the statistics, with no floor added.

        Inverse-propensity estimates are unbiased only then (positivity): an arm some users could not
        get says nothing of what those users would have done in it.
        """
        return False

    def sample(self, stats: ArmStats, rng: np.random.Generator) -> np.ndarray:
        """One arm per row of 2-D statistics, drawn from that row's probabilities."""
        m2 = stats.m2 if stats.m2 is not None else [None] * len(stats.pulls)
        probs = np.stack([self.probabilities(ArmStats(p, s, q, m)) for p, s, q, m in zip(stats.pulls, stats.sums, stats.sumsq, m2)])
        return draw_rows(probs, rng)


def draw_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of a (rows, K) probability matrix, by inverse CDF."""
    cdf = np.cumsum(probs, axis=1)
    u = np.asarray(rng.random(probs.shape[0]))[:, None] * cdf[:, -1:]
    return np.minimum((u >= cdf).sum(axis=1), probs.shape[1] - 1)


def split_ties(best: np.ndarray) -> np.ndarray:
    """Turn a boolean mask of best arms (rows, K) into probabilities that split ties evenly."""
    best = best.astype(np.float64)
    return best / best.sum(axis=-1, keepdims=True)


def with_floor(probabilities: np.ndarray, floor: float) -> np.ndarray:
    """Mix with the uniform allocation so that every arm keeps at least `floor`."""
    k = probabilities.shape[-1]
    if not 0 <= floor * k <= 1:
        raise ValueError(f"floor must lie in [0, 1/{k}] with {k} arms, got {floor}")
    return floor + (1.0 - k * floor) * probabilities
