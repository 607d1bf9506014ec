"""The reward ledger and each user's reward state, written one user at a time.

Every action of an exposed user, rewarded or not, is written to the ledger with
its sequence number and reason, so a balance can be audited and any random draw
recomputed. An action of a user never exposed is answered and not stored, so
that it counts when sent again after the user's assignment.
A user's state row is locked for the transaction (SQLite serialises writers
anyway), so concurrent actions of one user apply one after another, and a
replayed `action_id` answers what it answered the first time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from experiments.schedules import Decision, RewardState
from service.errors import Conflict
from service.store.database import Database
from service.store.sql import insert
from service.store.tables import ExperimentRow, ExposureRow, RewardLedgerRow, RewardStateRow
from service.timestamps import iso

# (arm, the user's state before the action) -> the schedule's decision, or None with the reason it does not apply.
Decide = Callable[[str, RewardState], tuple[Decision | None, str]]


@dataclass(frozen=True)
class ActionIn:
    """One reward-earning action as the storefront reported it."""

    action_id: str
    experiment: str
    user_id: str
    action: str
    value: float | None
    ts: float


def ledger_json(row: RewardLedgerRow, balance: float | None = None, duplicate: bool = False) -> dict[str, Any]:
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
        "recorded": True,
    }


AFTER_THE_STOP = "not_running: the experiment is stopped"  # the reason of an action recorded after the stop, which no schedule decided


def _replay(session: Session, action: ActionIn) -> dict[str, Any] | None:
    row = session.scalar(select(RewardLedgerRow).where(RewardLedgerRow.action_id == action.action_id))
    if row is None:
        return None
    if (row.experiment_key, row.user_id) != (action.experiment, action.user_id):
        raise Conflict(f"action_id {action.action_id!r} was already used for another user or experiment")
    return ledger_json(row, duplicate=True)


def _entry(action: ActionIn, arm: str | None, sequence: int, rewarded: bool, points: float, balance: float, reason: str) -> RewardLedgerRow:
    return RewardLedgerRow(
        action_id=action.action_id,
        experiment_key=action.experiment,
        user_id=action.user_id,
        arm=arm,
        action=action.action,
        value=action.value,
        ts=action.ts,
        sequence=sequence,
        rewarded=rewarded,
        points=points,
        balance_after=balance,
        reason=reason,
        created_at=time.time(),
    )


def _lock_state(session: Session, key: str, user: str, arm: str) -> RewardStateRow:
    """The user's reward state, created if new and locked until the transaction ends."""
    session.execute(
        insert(session, RewardStateRow)
        .values(experiment_key=key, user_id=user, arm=arm, actions=0, rewards=0, balance=0.0)
        .on_conflict_do_nothing(index_elements=["experiment_key", "user_id"])
    )
    state = session.get(RewardStateRow, (key, user), with_for_update=True, populate_existing=True)
    assert state is not None
    return state


def _apply(session: Session, action: ActionIn, exposure: ExposureRow, state: RewardStateRow, decide: Decide) -> RewardLedgerRow:
    before = RewardState(exposure.exposed_at, state.actions, state.rewards, state.balance, state.last_reward_at, state.next_eligible_at)
    decision, reason = decide(exposure.arm, before)
    if decision is None:
        return _entry(action, exposure.arm, state.actions, False, 0.0, state.balance, reason)
    after = decision.state
    state.actions, state.rewards, state.balance = after.actions, after.rewards, after.balance
    state.last_reward_at, state.next_eligible_at = after.last_reward_at, after.next_eligible_at
    return _entry(action, exposure.arm, after.actions, decision.rewarded, decision.points, after.balance, decision.reason)


def _stopped(session: Session, key: str) -> bool:
    """Whether the experiment is stopped, read after the user's state was locked.

    A stop waits for the reward actions being written and holds new ones back until it commits
    (`settling.settle`), so an action whose lock came after the stop reads it here, though the
    experiment was running when the action arrived.
    """
    return session.scalar(select(ExperimentRow.status).where(ExperimentRow.key == key)) == "stopped"


def _record(session: Session, action: ActionIn, decide: Decide) -> dict[str, Any]:
    replay = _replay(session, action)
    if replay is not None:
        return replay
    exposure = session.get(ExposureRow, (action.experiment, action.user_id))
    if exposure is None:
        # Nothing is stored, as for an outcome of a user never exposed: a checkout that raced the
        # user's first assignment earns its points when the storefront sends the action again.
        entry = _entry(action, None, 0, False, 0.0, 0.0, "not_exposed: nothing was recorded; ask for an assignment, then send the action again")
        return {**ledger_json(entry), "recorded": False}
    # Locked also after the stop, so that a user's entries commit in the order of their ids, which a
    # reader paging through the ledger (`ledger`) relies on.
    state = _lock_state(session, action.experiment, action.user_id, exposure.arm)
    # Another request for this user may have recorded the same action while we waited for the lock.
    replay = _replay(session, action)
    if replay is not None:
        return replay
    if _stopped(session, action.experiment):
        # The count of qualifying actions stands where the stop left it, as for any action that does not qualify.
        entry = _entry(action, exposure.arm, state.actions, False, 0.0, state.balance, AFTER_THE_STOP)
    else:
        entry = _apply(session, action, exposure, state, decide)
    session.add(entry)
    session.flush()
    return ledger_json(entry)


def record(db: Database, action: ActionIn, decide: Decide) -> dict[str, Any]:
    """Apply one action with `decide` while the experiment runs or is paused, or record it undecided once
    it is stopped; a replay of its `action_id` answers the stored result."""
    try:
        with db.write() as session:
            return _record(session, action, decide)
    except IntegrityError:
        # The same action_id committed concurrently (for another user): answer as a replay would.
        with db.read() as session:
            replay = _replay(session, action)
        if replay is None:
            raise
        return replay


def balance(db: Database, key: str, user_id: str) -> float:
    """The user's points balance in one experiment (0 before any reward)."""
    rows = db.fetch("SELECT balance FROM reward_states WHERE experiment_key = ? AND user_id = ?", (key, user_id))
    return float(rows[0][0]) if rows else 0.0


def ledger(db: Database, key: str, user_id: str, limit: int, after: int = 0, latest: bool = False) -> dict[str, Any]:
    """A user's balance and `limit` ledger entries, oldest first: the first recorded after entry `after`, or
    with `latest` the newest. `left_out` says whether other entries were left out (later ones, or with `latest` earlier
    ones); `more_after` is the last entry's id when later ones were (the next page starts after it), else None."""
    with db.read() as session:
        state = session.get(RewardStateRow, (key, user_id))
        rows = list(session.scalars(
            select(RewardLedgerRow)
            .where(RewardLedgerRow.experiment_key == key, RewardLedgerRow.user_id == user_id, RewardLedgerRow.id > after)
            .order_by(RewardLedgerRow.id.desc() if latest else RewardLedgerRow.id)
            .limit(limit + 1)
        ))
        more = len(rows) > limit
        rows = rows[:limit][::-1] if latest else rows[:limit]
        # The arm is the exposure's: a user enrolled before any reward action has no state row yet.
        arm = state.arm if state is not None and state.arm is not None else session.scalar(
            select(ExposureRow.arm).where(ExposureRow.experiment_key == key, ExposureRow.user_id == user_id)
        )
    return {
        "experiment": key,
        "user_id": user_id,
        "arm": arm,
        "balance": state.balance if state else 0.0,
        "actions": state.actions if state else 0,
        "rewards": state.rewards if state else 0,
        "history": [ledger_json(r) for r in rows],
        "left_out": more,
        "more_after": rows[-1].id if more and not latest and rows else None,
    }
