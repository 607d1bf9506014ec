"""Demo experiments for `make run`: an A/B test and a bandit over loyalty reward schedules."""
from __future__ import annotations

import time
import zlib
from datetime import datetime
from typing import Any, Iterator

import numpy as np

from service.errors import NotFound
from service.store import lifecycle
from service.store import state
from service.store.events import purchases
from service.store.outcomes import record
from service.usecases import experiments
from service.usecases.assignment import assign
from service.usecases.context import Services
from service.usecases.demo import LAPSED
from service.usecases.rewards import ActionIn, reward

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
    # Judged on purchases from the events the storefront sends: CUPED then uses each user's purchases before exposure.
    "primary_metric": "purchase_conversion",
    "guardrails": ["retention_d7"],
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
PLAIN = {"type": "per_unit", "points_per_unit": 1}


def _layered(key: str, name: str, treatment: str, schedule: dict[str, Any]) -> dict[str, Any]:
    """One half of the checkout layer: a plain control against one schedule."""
    return {
        "key": key,
        "name": name,
        "description": "Demo: shares the checkout layer with the other checkout test, so no user sees both.",
        "type": "ab",
        "traffic": 0.5,
        "layer": "checkout",
        "arms": [{"key": "control", "payload": {}, "schedule": PLAIN}, {"key": treatment, "payload": {}, "schedule": schedule}],
        "metrics": [{"key": "conversion", "kind": "binary"}],
        "primary_metric": "conversion",
        "bandit": None,
    }


CHECKOUT_DOUBLE = _layered("checkout-double", "Double points at checkout this week", "double", {**PLAIN, "multiplier": {"factor": 2, "start": "2026-01-01T00:00:00Z", "end": "2036-01-01T00:00:00Z"}})
CHECKOUT_STREAK = _layered("checkout-streak", "A bonus on every 3rd checkout", "every-3rd", {"type": "fixed_ratio", "every": 3, "points": 50})
WIN_BACK: dict[str, Any] = {
    "key": "win-back",
    "name": "Win back customers idle for 30 days with a 1-in-3 bonus",
    "description": "Demo: targets users who bought before and have been idle for at least 30 days.",
    "type": "ab",
    "traffic": 1.0,
    "targeting": {"all": [{"attribute": "idle_days", "op": "gte", "value": 30}, {"attribute": "purchases", "op": "gte", "value": 1}]},
    "arms": [{"key": "control", "payload": {}, "schedule": None}, {"key": "comeback", "payload": {"banner": "1 in 3 orders wins 200 points"}, "schedule": {"type": "variable_ratio", "mean": 3, "points": 200}}],
    "metrics": [{"key": "conversion", "kind": "binary"}],
    "primary_metric": "conversion",
    "bandit": None,
}
# The simulated truth: conversion rates per experiment and arm.
RATES = {
    "points-q4": {"control": 0.10, "every-5th": 0.13, "lottery": 0.12},
    "bonus-bandit": {"bonus-50": 0.05, "bonus-100": 0.10, "bonus-200": 0.20},
    "checkout-double": {"control": 0.10, "double": 0.14},
    "checkout-streak": {"control": 0.10, "every-3rd": 0.11},
    "win-back": {"control": 0.03, "comeback": 0.06},
}


# Per demo experiment, how far its load got: "loading" once created and started, "loaded" once its
# users are simulated. A load stopped halfway (Ctrl-C) is resumed by the next run; its ids and draws
# are deterministic and assignments sticky, so what was stored is found again, not doubled. An
# experiment of that key with no mark was made by someone else (or an older release) and is left alone.
_PROGRESS = "demo:"


def _ensure_running(svc: Services, definition: dict[str, Any]) -> bool:
    """Create and start the experiment, or find the one a stopped load left; False if a load of it
    finished before, or the experiment of that key is not the demo's."""
    key = str(definition["key"])
    progress = state.setting(svc.db, _PROGRESS + key)
    if progress == "loaded":
        return False
    try:
        status = experiments.get(svc.db, key)["status"]
    except NotFound:
        status = None
    if status is not None and progress is None:
        return False
    if status is None:
        # Marked first: a load stopped between the two leaves a marked draft, which the next run starts.
        state.put_setting(svc.db, _PROGRESS + key, "loading")
        experiments.create(svc.db, dict(definition))
        status = "draft"
    if status == "draft":
        experiments.move(svc.db, svc.experiment_cache, key, "start", svc.config.max_served_versions)
    return True


def _reward_purchases(svc: Services, key: str, exposed: dict[str, float]) -> int:
    """Apply each enrolled user's purchases after exposure to their arm's schedule, so the ledger shows what
    each schedule costs."""
    # Action ids are unique across experiments; points-q4's kept the form they had before the others had any.
    prefix = "demo-" if key == AB["key"] else f"demo-{key}-"
    applied = 0
    for event_id, user, ts, value in purchases(svc.db, list(exposed)):
        if ts < exposed[user]:
            continue
        reward(svc.db, svc.experiment_cache, ActionIn(f"{prefix}{event_id}", key, user, "purchase", value, ts))
        applied += 1
    return applied


def load_demo_experiments(svc: Services, n_users: int) -> Iterator[str]:
    """Create the experiments and simulate their users once; yield progress lines."""
    now = time.time()
    for definition in (AB, BANDIT, CHECKOUT_DOUBLE, CHECKOUT_STREAK, WIN_BACK):
        key = str(definition["key"])
        if not _ensure_running(svc, definition):
            yield f"experiment {key}: already there"
            continue
        # Draws of its own, so that a resumed load draws for each user what the stopped one drew.
        rng = np.random.default_rng([11, zlib.crc32(key.encode())])
        exp = svc.experiment_cache.current(svc.db, key)[0].experiment
        outcomes = []
        exposed_at: dict[str, float] = {}
        comebacks: list[ActionIn] = []
        enrolled = 0
        first_exposure = now
        targeted = "targeting" in definition
        audience = n_users + LAPSED if targeted else n_users
        for u in range(audience):
            user = f"user-{u}"
            # Targeting reads behaviour as of the exposure, so targeted users arrive now.
            exposed = now - DAY if targeted else now - 30 * DAY + 30 * DAY * u / n_users
            answer = assign(svc.db, svc.experiment_cache, key, user, exposed)
            arm = answer["arm"]
            if arm is None:  # outside its layer range, or not targeted
                continue
            exposed_at[user] = datetime.fromisoformat(answer["exposed_at"].replace("Z", "+00:00")).timestamp()  # as stored by an earlier load too
            enrolled += 1
            first_exposure = min(first_exposure, exposed)
            if rng.random() < RATES[key][arm]:
                outcome = {"outcome_id": f"demo-{key}-{u}", "experiment": key, "user_id": user, "metric": "conversion", "value": 1.0, "ts": exposed + DAY}
                outcomes.append(outcome)
                if exp.type == "bandit":  # the bandit learns as users arrive
                    record(svc.db, [outcome], {key: exp})
                elif any(m.key == "spend" for m in exp.metrics):
                    spend = round(float(rng.gamma(2.0, 20.0)), 2)
                    outcomes.append({**outcome, "outcome_id": f"demo-{key}-{u}-spend", "metric": "spend", "value": spend})
                elif targeted:  # a lapsed customer's return is a purchase: it goes through their arm's schedule
                    comebacks.append(ActionIn(f"demo-{key}-{u}-comeback", key, user, "purchase", round(float(rng.gamma(2.0, 20.0)), 2), exposed + DAY))
        if exp.type == "ab":
            record(svc.db, outcomes, {key: exp})
        for action in comebacks:
            reward(svc.db, svc.experiment_cache, action)
        lifecycle.start_from(svc.db, key, first_exposure)  # its simulated users arrived before it was loaded
        if any(arm.schedule is not None for arm in exp.arms):
            sent = _reward_purchases(svc, key, exposed_at) + len(comebacks)
            yield f"experiment {key}: {sent} purchases after exposure sent through the reward schedules"
        yield f"experiment {key}: {enrolled} of {audience} users enrolled, {sum(1 for o in outcomes if o['metric'] == 'conversion')} conversions reported"
        state.put_setting(svc.db, _PROGRESS + key, "loaded")
