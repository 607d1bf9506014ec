"""Rewards: apply the user's arm's reward schedule to an action, idempotently (see `service.store.rewards`)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from experiments.schedules import Action, Decision, RewardState
from service.store import experiments as experiment_store
from service.store import rewards as store
from service.store.database import Database
from service.store.rewards import ActionIn
from service.timestamps import server_time
from service.usecases.experiment_cache import ExperimentCache


def reward(db: Database, cache: ExperimentCache, action: ActionIn) -> dict[str, Any]:
    """Apply one action under the user's arm's schedule; a replay of its `action_id` answers the stored result.

    An action dated ahead of the server's clock happens, and is recorded, when it arrived: a date a
    century ahead would otherwise set the user's next interval reward a century ahead, and a
    multiplier window could be claimed before it opened.
    """
    arrived = server_time()
    action = replace(action, ts=min(action.ts, arrived))
    d, _ = cache.current(db, action.experiment)
    exp = d.experiment

    def decide(arm: str, before: RewardState) -> tuple[Decision | None, str]:
        schedule = exp.arm(arm).schedule
        if schedule is None:
            return None, "the arm has no reward schedule"
        if schedule.action != action.action:
            return None, f"not a qualifying action (this schedule rewards {schedule.action!r})"
        if action.value is not None and action.value < 0:  # as per_unit already read it: a refund earns nothing
            return None, "a negative value is a return, not a qualifying action"
        # An exposure dated ahead of the clock (an assignment's timestamp is stored as sent) starts the
        # first wait when this action arrived instead, so no date sent ahead holds a user's rewards back;
        # an action dated before the exposure (a late report) leaves the wait as it is.
        before = replace(before, enrolled_at=min(before.enrolled_at, arrived))
        return schedule.apply(before, Action(exp.key, action.user_id, before.actions + 1, action.ts, action.value)), ""

    return store.record(db, action, decide)


def ledger(db: Database, key: str, user_id: str, limit: int = 1000, cursor: str | None = None) -> dict[str, Any]:
    """A page of a user's reward history in one experiment, oldest first, with their balance; `next_cursor`
    names the next page, None on the last. NotFound for an unknown experiment."""
    experiment_store.stamp(db, key)
    page = store.ledger(db, key, user_id, limit, after=int(cursor or 0))  # the cursor: the last entry's row id
    page.pop("left_out")
    more_after = page.pop("more_after")
    return {**page, "next_cursor": None if more_after is None else str(more_after)}


def latest_ledger(db: Database, key: str, user_id: str, limit: int) -> dict[str, Any]:
    """A user's balance and newest `limit` ledger entries, oldest first; `left_out` says whether earlier ones were."""
    page = store.ledger(db, key, user_id, limit, latest=True)
    page.pop("more_after")
    return page
