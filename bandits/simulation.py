"""Regret on Bernoulli arms: many seeded runs of a policy at once.

Pseudo-regret is summed per round as (best mean - chosen arm's mean), the
textbook quantity, so it does not depend on the reward coin flips' noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bandits.base import ArmStats
from bandits.registry import make_policy


@dataclass(frozen=True)
class RegretResult:
    """Cumulative regret after the last round, over independent seeded runs."""

    policy: str
    rounds: int
    runs: int
    mean: float
    std_error: float
    final_share_of_best: float


def simulate(policy_name: str, means: Sequence[float], rounds: int = 10_000, runs: int = 200, seed: int = 0, epsilon: float = 0.1) -> RegretResult:
    """Run `runs` independent bandits for `rounds` rounds on Bernoulli arms with `means`."""
    mu = np.asarray(means, dtype=np.float64)
    if mu.ndim != 1 or len(mu) < 2 or ((mu < 0) | (mu > 1)).any():
        raise ValueError("means must list at least 2 probabilities in [0, 1]")
    policy = make_policy(policy_name, "binary", epsilon)
    rng = np.random.default_rng(seed)
    stats = ArmStats.zeros(runs, len(mu))
    gaps = mu.max() - mu
    regret = np.zeros(runs)
    rows = np.arange(runs)
    for _ in range(rounds):
        arms = policy.sample(stats, rng)
        rewards = (rng.random(runs) < mu[arms]).astype(np.float64)
        stats.pulls[rows, arms] += 1
        stats.sums[rows, arms] += rewards
        stats.sumsq[rows, arms] += rewards
        regret += gaps[arms]
    best_share = stats.pulls[:, int(mu.argmax())].sum() / stats.pulls.sum()
    return RegretResult(policy_name, rounds, runs, float(regret.mean()), float(regret.std(ddof=1) / np.sqrt(runs)), float(best_share))
