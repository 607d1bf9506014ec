"""An experiment's moves: start, pause and stop, each a compare-and-set on its status under the row's lock."""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from experiments.definitions import LIVE, TransitionError, transition
from experiments.targeting import TargetingError, parse_rule, require_values
from service.errors import Conflict, NotFound
from service.store.database import Database
from service.store.layers import claim
from service.store.settling import CHANGE_LOCK, settle
from service.store.sql import insert
from service.store.tables import BanditArmStatsRow, ExperimentRow, ModelVersionRow
from service.timestamps import server_time


def _check_rule_to_start(targeting: dict[str, Any]) -> None:
    """A draft saved by an older release may hold a rule today's checks refuse (a condition without a
    value matches nobody): it is read as stored, but its first start is refused until it is changed."""
    try:
        require_values(parse_rule(targeting))
    except TargetingError as exc:
        raise Conflict(f"the targeting rule cannot start as it is: {exc.field} {exc.message}; change the rule first") from None


class StartCheck:
    """What a start's check may read, in the start's own transaction (under the experiment's row lock)."""

    def __init__(self, session: Session, key: str, resuming: bool) -> None:
        self._session = session
        self._key = key
        # A paused experiment's versions are served already (its exposed users are answered from their arm).
        self.resuming = resuming

    def versions_status(self, versions: set[str]) -> dict[str, str]:
        """The status of each of these model versions that exists. Share-locked in one statement, in the order
        a prune locks them (newest first), so that the two never deadlock: a prune deleting one waits for this
        start, then sees the experiment naming it and keeps it (`model_retention`)."""
        rows = self._session.execute(
            select(ModelVersionRow.version, ModelVersionRow.status).where(ModelVersionRow.version.in_(sorted(versions)))
            .order_by(ModelVersionRow.created_at.desc()).with_for_update(read=True)
        )
        return {version: status for version, status in rows}

    def arms_of_other_live(self) -> list[list[dict[str, Any]]]:
        """The arms of every other running or paused experiment (a paused one still answers its exposed users
        from their arm). On PostgreSQL two starts read them one after the other (SQLite already serialises
        writers), so that a limit over all of them holds."""
        if self._session.get_bind().dialect.name == "postgresql":
            self._session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('start:running-arms', 7))"))
        rows = self._session.execute(select(ExperimentRow.arms).where(ExperimentRow.status.in_(LIVE), ExperimentRow.key != self._key))
        return [list(arms) for (arms,) in rows]


def move(
    db: Database, key: str, action: str, check_start: Callable[[list[dict[str, Any]], StartCheck], None] | None = None,
    on_stop: Callable[[Session, str, float], None] | None = None,
) -> ExperimentRow:
    """Start, pause or stop: an atomic compare-and-set on the status; Conflict if it does not allow the move.

    `check_start` sees the arms a start starts with, under the row's lock, so that no change to a
    draft comes between the check and the start, and what else it may read (`StartCheck`); it raises to refuse. `on_stop` runs in a stop's
    transaction with the experiment's key and the time it stops at.
    """
    with db.write() as session:
        row = session.get(ExperimentRow, key, with_for_update=CHANGE_LOCK)
        if row is None:
            raise NotFound("experiment", key)
        try:
            new = transition(row.status, action)  # type: ignore[arg-type]
        except TransitionError as exc:
            raise Conflict(str(exc)) from None
        # A pause or a stop: no enrolment in flight may land after it returns; a stop: nor an outcome dated after it.
        stopping = action == "stop"
        settle(session, (("outcomes",) if stopping else ()) + (("exposures",) if row.status == "running" else ()) + (("reward_states",) if stopping else ()))
        now = server_time()  # as the answer gives it: what is dated at the stop it reports counts for no arm
        first_start = row.status == "draft"
        values: dict[str, Any] = {"status": new, "updated_at": now, "revision": row.revision + 1}
        if action == "start" and row.started_at is None:
            values["started_at"] = now
        if action == "start" and check_start is not None:
            check_start(list(row.arms), StartCheck(session, key, resuming=row.status == "paused"))
        if first_start and row.targeting:
            _check_rule_to_start(row.targeting)
        if action == "start" and row.layer is not None and row.layer_start is None:
            values["layer_start"], values["layer_end"] = claim(session, row)
        if action == "stop":
            values["stopped_at"] = now
            if on_stop is not None:
                on_stop(session, key, now)
        done = session.execute(
            update(ExperimentRow).where(ExperimentRow.key == key, ExperimentRow.status == row.status).values(**values)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]  # the row lock makes this unreachable
            raise Conflict("the experiment changed while moving it; try again")
        if row.type == "bandit" and first_start:  # its arms' rows, once: no exposure can be in flight yet
            stats = insert(session, BanditArmStatsRow).on_conflict_do_nothing(index_elements=["experiment_key", "arm"])
            session.execute(stats, [{"experiment_key": key, "arm": a["key"], "pulls": 0, "reward_sum": 0.0, "reward_sumsq": 0.0, "reward_m2": 0.0, "reward_count": 0} for a in row.arms])
        session.flush()
        session.refresh(row)
        return row


def start_from(db: Database, key: str, started_at: float) -> None:
    """Date a running experiment's start back to `started_at`: for the demo, whose simulated users
    arrive over the month before it is loaded (the start only moves earlier, never later), and its
    creation with it, so that it was not started before it was made."""
    with db.write() as session:
        session.execute(update(ExperimentRow).where(ExperimentRow.key == key, ExperimentRow.started_at > started_at).values(started_at=started_at))
        session.execute(update(ExperimentRow).where(ExperimentRow.key == key, ExperimentRow.created_at > started_at).values(created_at=started_at))
