"""Demo experiments for `make run`: an A/B test and a bandit over loyalty reward schedules."""
from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np

from service.usecases.assignment import assign
from service.errors import Conflict
from service.usecases.context import Services
from service.usecases import experiments
from service.store.outcomes import record

DAY = 86_400.0
AB: dict[str, Any] = {
    "key": "points-q4",
    "name": "Q4 loyalty points: per-unit vs every 5th vs 1-in-5 lottery",
    "description": "Demo A/B/n test of three reward schedules.",
    "type": "ab",
    "traffic": 1.0,
    "arms": [
        {"key": "control", "weight": 1.0, "payload": {"banner": "1 point per unit spent"}, "schedule": {"type": "per_unit", "points_per_unit": 1}},
        {"key": "every-5th", "weight": 1.0, "payload": {"banner": "100 points on every 5th order"}, "schedule": {"type": "fixed_ratio", "every": 5, "points": 100}},
        {"key": "lottery", "weight": 1.0, "payload": {"banner": "1 in 5 orders wins 100 points"}, "schedule": {"type": "variable_ratio", "mean": 5, "points": 100}},
    ],
    "metrics": [{"key": "conversion", "kind": "binary"}, {"key": "spend", "kind": "continuous"}],
    "primary_metric": "conversion",
    "bandit": None,
}
BANDIT: dict[str, Any] = {
    "key": "bonus-bandit",
    "name": "Weekly bonus size, allocated by Thompson sampling",
    "description": "Demo bandit over three fixed-interval bonuses.",
    "type": "bandit",
    "traffic": 1.0,
    "arms": [
        {"key": f"bonus-{points}", "weight": 1.0, "payload": {"points": points}, "schedule": {"type": "fixed_interval", "seconds": 7 * DAY, "points": points}}
        for points in (50, 100, 200)
    ],
    "metrics": [{"key": "conversion", "kind": "binary"}],
    "primary_metric": "conversion",
    "bandit": {"algorithm": "thompson", "epsilon": 0.1, "min_probability": 0.02},
}
# The simulated truth: conversion rates per arm.
RATES = {"control": 0.10, "every-5th": 0.13, "lottery": 0.12, "bonus-50": 0.05, "bonus-100": 0.10, "bonus-200": 0.20}


def _ensure_running(svc: Services, definition: dict[str, Any]) -> bool:
    """Create and start the experiment; False if it already existed (a rerun)."""
    try:
        experiments.create(svc.db, dict(definition))
    except Conflict:
        return False
    experiments.move(svc.db, definition["key"], "start")
    return True


def load_demo_experiments(svc: Services, n_users: int) -> Iterator[str]:
    """Create both experiments and simulate their users once; yield progress lines."""
    rng = np.random.default_rng(11)
    now = time.time()
    for definition in (AB, BANDIT):
        key = str(definition["key"])
        if not _ensure_running(svc, definition):
            yield f"experiment {key}: already there"
            continue
        exp = svc.definitions.current(svc.db, key)[0].experiment
        outcomes = []
        for u in range(n_users):
            user = f"user-{u}"
            exposed = now - 30 * DAY + 30 * DAY * u / n_users
            arm = assign(svc.db, svc.definitions, key, user, exposed)["arm"]
            if rng.random() < RATES[arm]:
                outcome = {"outcome_id": f"demo-{key}-{u}", "experiment": key, "user_id": user, "metric": "conversion", "value": 1.0, "ts": exposed + DAY}
                outcomes.append(outcome)
                if exp.type == "bandit":  # the bandit learns as users arrive
                    record(svc.db, [outcome], {key: exp})
                else:
                    spend = round(float(rng.gamma(2.0, 20.0)), 2)
                    outcomes.append({**outcome, "outcome_id": f"demo-{key}-{u}-spend", "metric": "spend", "value": spend})
        if exp.type == "ab":
            record(svc.db, outcomes, {key: exp})
        yield f"experiment {key}: {n_users} users assigned, {sum(1 for o in outcomes if o['metric'] == 'conversion')} conversions reported"
