"""A bandit's allocation for its next new user, and whether every arm stays possible (positivity)."""
from __future__ import annotations

import time

import numpy as np

from bandits.base import ArmStats, Policy, with_floor
from bandits.registry import make_policy
from experiments.definitions import Experiment
from service.store import exposures
from service.store.database import Database
from service.store.experiments import StoredDefinition


def _policy(exp: Experiment) -> Policy:
    """The experiment's bandit policy, for its primary metric's kind."""
    assert exp.bandit is not None
    return make_policy(exp.bandit.algorithm, exp.metric(exp.primary_metric).kind, exp.bandit.epsilon)


def bandit_allocation(db: Database, d: StoredDefinition, now: float | None = None) -> np.ndarray:
    """The bandit's probabilities for the next new user, floor included."""
    exp = d.experiment
    assert exp.bandit is not None
    if exp.bandit.attribution_hours is not None:  # pulls whose window has passed count now, as failures or zeros
        # By the server's clock: a client's timestamp from the future must not close other users' windows.
        today = time.time() if now is None else min(now, time.time())
        exposures.mature(db, exp.key, today - exp.bandit.attribution_hours * 3600)
    rows = exposures.arm_stats(db, exp.key)
    zero = (0, 0.0, 0.0, 0.0)
    pulls, sums, sumsq, m2 = (list(col) for col in zip(*(rows.get(a.key, zero) for a in exp.arms)))
    stats = ArmStats.of(pulls, sums, sumsq, m2)
    return with_floor(_policy(exp).probabilities(stats), exp.bandit.min_probability)


def every_arm_possible(exp: Experiment) -> bool:
    """Whether the bandit gave every arm a chance above 0 with every user (positivity), as its
    inverse-propensity estimates need: a floor above 0, or a policy that explores every arm itself.
    An A/B test's arms all weigh above 0."""
    if exp.bandit is None or exp.bandit.min_probability > 0 or len(exp.arms) < 2:
        return True
    return _policy(exp).explores_every_arm()


def no_positivity_note(exp: Experiment) -> str:
    """Why a bandit's weighted estimates carry no interval when `every_arm_possible` is False."""
    assert exp.bandit is not None
    return (f"min_probability is 0 and {exp.bandit.algorithm} may give an arm no chance at all: users who could not get an arm "
            "say nothing of it, so the weighted estimates may be biased and come with no interval; a min_probability above 0 "
            "keeps every arm possible and makes them unbiased")
