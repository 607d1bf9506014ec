"""Rewards: apply the user's arm's schedule to an action, idempotently, one user at a time.

Every action, rewarded or not, is written to the ledger with the sequence
number and reason, so a balance can be audited and any random draw recomputed.
A user's reward state row is locked for the transaction (SQLite serialises
writers anyway), so concurrent actions of one user are applied one after
another and a replayed `action_id` answers what it answered the first time.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from experiments.schedules import Action, RewardState as ScheduleState
from service.assigning import Definition, DefinitionCache
from service.db import Database
from service.errors import conflict
from service.models import Exposure, RewardLedger, RewardState
from service.schemas.common import iso
from service.stores.sql import insert


def ledger_json(row: RewardLedger, balance: float | None = None, duplicate: bool = False) -> dict[str, Any]:
    """A ledger entry as the API's reward answer."""
    return {
        "action_id": row.action_id,
        "experiment": row.experiment_key,
        "user_id": row.user_id,
        "arm": row.arm,
        "enrolled": row.arm is not None,
        "rewarded": row.rewarded,
        "points": row.points,
        "balance": row.balance_after if balance is None else balance,
        "sequence": row.sequence,
        "reason": row.reason or "",
        "duplicate": duplicate,
        "timestamp": iso(row.ts),
    }


def _replay(session: Session, action: dict[str, Any]) -> dict[str, Any] | None:
    row = session.scalar(select(RewardLedger).where(RewardLedger.action_id == action["action_id"]))
    if row is None:
        return None
    if (row.experiment_key, row.user_id) != (action["experiment"], action["user_id"]):
        raise conflict(f"action_id {action['action_id']!r} was already used for another user or experiment")
    return ledger_json(row, duplicate=True)


def _entry(action: dict[str, Any], arm: str | None, sequence: int, rewarded: bool, points: float, balance: float, reason: str) -> RewardLedger:
    return RewardLedger(
        action_id=action["action_id"],
        experiment_key=action["experiment"],
        user_id=action["user_id"],
        arm=arm,
        action=action["action"],
        value=action.get("value"),
        ts=action["ts"],
        sequence=sequence,
        rewarded=rewarded,
        points=points,
        balance_after=balance,
        reason=reason,
        created_at=time.time(),
    )


def _lock_state(session: Session, key: str, user: str, arm: str) -> RewardState:
    """The user's reward state, created if new and locked until the transaction ends."""
    session.execute(
        insert(session, RewardState)
        .values(experiment_key=key, user_id=user, arm=arm, actions=0, rewards=0, balance=0.0)
        .on_conflict_do_nothing(index_elements=["experiment_key", "user_id"])
    )
    state = session.get(RewardState, (key, user), with_for_update=True, populate_existing=True)
    assert state is not None
    return state


def _decide(d: Definition, exposure: Exposure, state: RewardState, action: dict[str, Any]) -> RewardLedger:
    """Apply the arm's schedule to a new action and move the locked state on."""
    schedule = d.experiment.arm(exposure.arm).schedule
    if schedule is None or schedule.action != action["action"]:
        reason = "the arm has no reward schedule" if schedule is None else f"not a qualifying action (this schedule rewards {schedule.action!r})"
        return _entry(action, exposure.arm, state.actions, False, 0.0, state.balance, reason)
    before = ScheduleState(exposure.exposed_at, state.actions, state.rewards, state.balance, state.last_reward_at, state.next_eligible_at)
    decision = schedule.apply(before, Action(d.experiment.key, action["user_id"], state.actions + 1, action["ts"], action.get("value")))
    after = decision.state
    state.actions, state.rewards, state.balance = after.actions, after.rewards, after.balance
    state.last_reward_at, state.next_eligible_at = after.last_reward_at, after.next_eligible_at
    return _entry(action, exposure.arm, after.actions, decision.rewarded, decision.points, after.balance, decision.reason)


def _record(session: Session, d: Definition, status: str, action: dict[str, Any]) -> dict[str, Any]:
    key, user = action["experiment"], action["user_id"]
    replay = _replay(session, action)
    if replay is not None:
        return replay
    exposure = session.get(Exposure, (key, user))
    if exposure is None or status == "stopped":
        reason = "not_exposed: ask for an assignment first" if exposure is None else "not_running: the experiment is stopped"
        state_row = session.get(RewardState, (key, user))
        entry = _entry(action, None, 0, False, 0.0, state_row.balance if state_row else 0.0, reason)
    else:
        state = _lock_state(session, key, user, exposure.arm)
        # Another request for this user may have recorded the same action while we waited for the lock.
        replay = _replay(session, action)
        if replay is not None:
            return replay
        entry = _decide(d, exposure, state, action)
    session.add(entry)
    session.flush()
    return ledger_json(entry)


def reward(db: Database, cache: DefinitionCache, action: dict[str, Any]) -> dict[str, Any]:
    """Apply one action; a replay of its `action_id` answers the stored result."""
    d, status = cache.current(db, action["experiment"])
    try:
        with db.write() as session:
            return _record(session, d, status, action)
    except IntegrityError:
        # The same action_id committed concurrently (for another user): answer as a replay would.
        with db.read() as session:
            replay = _replay(session, action)
        if replay is None:
            raise
        return replay


def ledger(db: Database, key: str, user_id: str, limit: int = 1000) -> dict[str, Any]:
    """A user's balance and newest `limit` ledger entries, oldest first."""
    with db.read() as session:
        state = session.get(RewardState, (key, user_id))
        rows = session.scalars(
            select(RewardLedger)
            .where(RewardLedger.experiment_key == key, RewardLedger.user_id == user_id)
            .order_by(RewardLedger.id.desc())
            .limit(limit)
        ).all()
    return {
        "experiment": key,
        "user_id": user_id,
        "arm": state.arm if state else None,
        "balance": state.balance if state else 0.0,
        "actions": state.actions if state else 0,
        "rewards": state.rewards if state else 0,
        "history": [ledger_json(r) for r in reversed(rows)],
    }
