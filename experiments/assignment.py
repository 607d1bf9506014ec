"""Deterministic assignment: the same (experiment, user) gives the same answer everywhere.

Two independent salted hashes place a user into fine-grained buckets: one
decides enrolment against `traffic`, the other picks the arm by weight. Keeping
them independent means ramping traffic up enrols new users without moving
anyone already enrolled, and the arm split stays the weights at any traffic.
Shares and weights resolve to the nearest 1/BUCKETS. A bandit's draw uses the
hash whole instead: its propensities change with every update and are reported
with each exposure, so an arm's chance must be its propensity, however small.
"""
from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import Sequence

from experiments.hashing import hash64, unit_hash

BUCKETS = 100_000


def bucket(salt: str, experiment: str, user_id: str, purpose: str) -> int:
    """The user's bucket in [0, BUCKETS) for one purpose ("traffic" or "arm")."""
    return hash64(salt, experiment, user_id, purpose) % BUCKETS


def unit_draw(salt: str, experiment: str, user_id: str, purpose: str) -> float:
    """The user's bucket as a number in [0, 1): the midpoint, so it never hits a boundary."""
    return (bucket(salt, experiment, user_id, purpose) + 0.5) / BUCKETS


def enrolled(salt: str, experiment: str, user_id: str, traffic: float) -> bool:
    """Whether the user falls inside the enrolled share of traffic: a bucket's midpoint below it, so that a share
    rounds to the nearest 1/BUCKETS (a share of 1e-300 enrols nobody, not one user in BUCKETS)."""
    return unit_draw(salt, experiment, user_id, "traffic") < traffic


def bandit_draw(salt: str, experiment: str, user_id: str) -> float:
    """The user's draw in [0, 1) for a bandit's arm, at the hash's full resolution (see the module's note)."""
    return unit_hash(salt, experiment, user_id, "arm")


def pick(probabilities: Sequence[float], u: float) -> int:
    """The index whose cumulative probability interval holds `u` (inverse CDF)."""
    bounds = list(accumulate(probabilities))
    index = bisect_right(bounds, u * bounds[-1])
    return min(index, len(probabilities) - 1)


def ab_arm(salt: str, experiment: str, user_id: str, weights: Sequence[float]) -> int:
    """The A/B arm index for a user, split by relative weights."""
    return pick(weights, unit_draw(salt, experiment, user_id, "arm"))
