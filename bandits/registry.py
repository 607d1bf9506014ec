"""The policies the service can run, by name."""
from __future__ import annotations

from bandits.base import Policy, RewardKind
from bandits.epsilon_greedy import EpsilonGreedy
from bandits.thompson import ThompsonSampling
from bandits.ucb1 import UCB1
from bandits.uniform import Uniform

POLICIES: dict[str, type[Policy]] = {
    "thompson": ThompsonSampling,
    "ucb1": UCB1,
    "epsilon_greedy": EpsilonGreedy,
    "uniform": Uniform,
}


def make_policy(name: str, reward: RewardKind = "binary", epsilon: float = 0.1) -> Policy:
    """The named policy, or a ValueError listing the known ones."""
    cls = POLICIES.get(name)
    if cls is None:
        raise ValueError(f"unknown bandit algorithm {name!r}; known: {', '.join(POLICIES)}")
    return cls(reward=reward, epsilon=epsilon)
