"""Experiment definitions and their lifecycle in the database."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from experiments.definitions import BUILTIN_METRICS, DESIGN_FIELDS, Experiment, TransitionError, transition
from experiments.layers import Range, first_fit, free_share, largest_gap
from experiments.targeting import TargetingError, parse_rule, require_values
from service.errors import Busy, ChangedMeanwhile, Conflict, NotFound
from service.store.experiment_codec import DEFINITION_FIELDS, definition, field_as_read, from_row
from service.store.database import Database
from service.store.sql import insert
from service.store.tables import BanditArmStatsRow, ExperimentRow, ModelVersionRow
from service.timestamps import server_time


@dataclass(frozen=True)
class StoredDefinition:
    """An experiment as assignment and analysis need it: parsed at one revision, with its salt."""

    revision: int
    status: str
    experiment: Experiment
    salt: str
    arms_json: dict[str, dict[str, Any]]
    layer_range: Range | None = None
    stopped_at: float | None = None  # epoch seconds: what users do from then on counts in no result


@dataclass(frozen=True)
class Stamp:
    """An experiment's status and revision; the salt tells a re-created key from the deleted draft it replaces."""

    status: str
    revision: int
    salt: str

    @classmethod
    def of(cls, row: ExperimentRow) -> "Stamp":
        """The stamp of a row just written."""
        return cls(row.status, row.revision, row.salt)


def stamp(db: Database, key: str) -> Stamp:
    """The experiment's stamp in one small read; NotFound if it does not exist."""
    rows = db.fetch("SELECT status, revision, salt FROM experiments WHERE key = ?", (key,))
    if not rows:
        raise NotFound("experiment", key)
    return Stamp(rows[0][0], int(rows[0][1]), rows[0][2])


def first_missing(db: Database, keys: list[str]) -> str | None:
    """The first of `keys` that names no experiment, or None when they all do."""
    found = {r[0] for r in db.fetch(f"SELECT key FROM experiments WHERE key IN ({', '.join('?' * len(keys))})", tuple(keys))} if keys else set()
    return next((key for key in keys if key not in found), None)


def load_definition(db: Database, key: str) -> StoredDefinition:
    """The experiment's current definition, parsed; NotFound if it does not exist."""
    row = get(db, key)
    owned = Range(row.key, row.layer_start, row.layer_end) if row.layer_start is not None and row.layer_end is not None else None
    return StoredDefinition(row.revision, row.status, from_row(row), row.salt, {a["key"]: a for a in row.arms}, owned, row.stopped_at)


def get(db: Database, key: str) -> ExperimentRow:
    """The stored experiment, or a 404."""
    with db.read() as session:
        row = session.get(ExperimentRow, key)
    if row is None:
        raise NotFound("experiment", key)
    return row


def list_all(db: Database, status: str | None) -> list[ExperimentRow]:
    """Experiments, newest first, optionally of one status."""
    stmt = select(ExperimentRow).order_by(ExperimentRow.created_at.desc(), ExperimentRow.key)
    if status:
        stmt = stmt.where(ExperimentRow.status == status)
    with db.read() as session:
        return list(session.scalars(stmt).all())


def create(db: Database, fields: dict[str, Any]) -> ExperimentRow:
    """Validate and store a new draft; 409 if the key is taken."""
    exp = definition({**fields, "status": "draft"})
    now = time.time()
    values = {**fields, "primary_metric": exp.primary_metric, "status": "draft", "salt": secrets.token_hex(8), "created_at": now, "updated_at": now, "revision": 1}
    with db.write() as session:
        stmt = insert(session, ExperimentRow).values(**values).on_conflict_do_nothing(index_elements=["key"]).returning(ExperimentRow.key)
        if session.execute(stmt).first() is None:
            raise Conflict(f"an experiment with key {fields['key']!r} already exists")
        return session.get(ExperimentRow, fields["key"])  # type: ignore[return-value]


# Changes lock the experiment's row FOR NO KEY UPDATE on PostgreSQL: an exposure's foreign-key check
# takes FOR KEY SHARE on the same row, and must not wait behind (or deadlock with) a pause or stop.
_CHANGE_LOCK = {"key_share": True}


# How long a pause, stop or change of a running experiment waits for the tables it settles. While it
# waits, new first exposures (and, for a stop, outcome batches) of every experiment queue behind it, so
# the wait is bounded; an outcome batch of 10,000 rows or a maturation of 100,000 holds a table for 0.2 to 0.6 s.
SETTLE_SECONDS = 2
# What is being written to each table a change may settle, as its refusal names it.
_WRITES = {"outcomes": "outcome batches", "exposures": "first exposures", "reward_states": "reward actions"}


def _settle(session: Session, tables: tuple[str, ...]) -> None:
    """Wait for what is being written to `tables` to commit, and hold new writes until this change commits (PostgreSQL).

    exposures: an exposure's statement checks the experiment's stamp in its own snapshot, taken as it
    began; one slowed inside it (its bandit arm's row held by an outcome batch, say) had committed after a
    pause or stop returned, enrolling a user the experiment no longer admitted. outcomes (a stop): a batch
    that read the experiment as running adds every outcome to the totals, also one dated after the stop;
    once the batches in flight have committed, the stop takes such outcomes back out (`on_stop`), and a
    later batch reads the stop. reward_states (a stop): a reward action decided by the schedule after the
    stop had returned would grant points the stopped experiment no longer gives; an action reads the status
    once it holds its user's state (`rewards._stopped`). SHARE conflicts with the ROW EXCLUSIVE lock a write holds until it commits,
    and a statement waiting for its lock takes its snapshot once it has it, after this change.

    Taken after the experiment's row: a draft's deletion locks the row and then cascades into exposures,
    and the other order deadlocked with it; what writes these tables takes only KEY SHARE on the row, which
    the change's FOR NO KEY UPDATE does not wait for. outcomes before exposures, the order an outcome batch
    writes them in (it marks waiting exposures counted after storing its outcomes). Unavailable (503) rather
    than a longer stall when a table stays held past SETTLE_SECONDS: nothing is changed, and a retry is
    safe. SQLite serialises writers already.
    """
    if session.get_bind().dialect.name == "sqlite" or not tables:
        return
    # statement_timeout bounds the whole statement (lock_timeout bounds each table's lock on its own), and
    # lock_timeout is set too so that a shorter one configured on the server does not cut the wait short.
    session.execute(text(f"SET LOCAL statement_timeout = '{SETTLE_SECONDS}s'"))
    session.execute(text(f"SET LOCAL lock_timeout = '{SETTLE_SECONDS}s'"))
    try:
        session.execute(text(f"LOCK TABLE {', '.join(tables)} IN SHARE MODE"))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) not in ("57014", "55P03"):  # query_canceled, lock_not_available
            raise
        raise Busy(
            f"{' or '.join(_WRITES[t] for t in tables)} being written held the experiment's change back for over {SETTLE_SECONDS} s "
            "(a long outcome batch or maintenance); nothing was changed, try again"
        ) from None
    session.execute(text("SET LOCAL statement_timeout TO DEFAULT"))
    session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))


# The analysis plan: what decides an experiment's reading (its default intervals, adjustment and guardrails).
PLAN_FIELDS = ("analysis", "guardrails")


def patch(db: Database, key: str, changes: dict[str, Any], revision: int | None = None) -> ExperimentRow:
    """Apply changes; design fields only while draft and the analysis plan only until the stop (409), and the result must validate (422).

    With `revision`, only to the experiment at that revision (ChangedMeanwhile otherwise), checked under the row's lock.
    """
    with db.write() as session:
        row = session.get(ExperimentRow, key, with_for_update=_CHANGE_LOCK)
        if row is None:
            raise NotFound("experiment", key)
        if revision is not None and row.revision != revision:
            raise ChangedMeanwhile(f"{key} is at revision {row.revision}, not {revision}: it changed since")
        # A field sent as it reads is no change: a client that reads the definition, renames it and writes it back
        # is not refused for the arms it sent unchanged.
        sent_changed = {name for name in changes if field_as_read(name, getattr(row, name)) != field_as_read(name, changes[name])}
        frozen = sorted(sent_changed & DESIGN_FIELDS)
        if frozen and row.status != "draft":
            raise Conflict(f"{', '.join(frozen)} can only change while the experiment is a draft; it is {row.status}")
        if "traffic" in sent_changed and row.layer is not None and row.status != "draft":
            raise Conflict(f"the traffic of a layered experiment owns a range of its layer from start to stop; it can only change while a draft (it is {row.status})")
        merged = {name: getattr(row, name) for name in DEFINITION_FIELDS}
        merged.update(changes)
        replanned = [name for name in PLAN_FIELDS if field_as_read(name, getattr(row, name)) != field_as_read(name, merged[name])]
        if replanned and row.status == "stopped":  # before the values' own checks: no value would be taken
            raise Conflict(f"a stopped experiment keeps the {' and '.join(replanned)} it had at the stop, so that the reading a decision "
                           "rested on cannot change afterwards; to read its results another way, pass sequential or cuped to /results, "
                           "and metric= for any metric, guardrail or not")
        if "type" in changes and changes["type"] == "ab" and "bandit" not in changes:
            merged["bandit"] = None
        if "metrics" in changes and "primary_metric" not in changes:
            keys = [m["key"] for m in changes["metrics"]]
            if merged["primary_metric"] not in keys and merged["primary_metric"] not in BUILTIN_METRICS:
                merged["primary_metric"] = keys[0] if keys else None
        # A rule stored before a check was added is read as stored, unless this change replaces it; so are
        # built-in metrics that a row from before they were refused in `metrics` still lists (as `from_row` reads it).
        checked = merged if "metrics" in changes else {**merged, "metrics": [m for m in merged["metrics"] if m["key"] not in BUILTIN_METRICS]}
        exp = definition(checked, stored="targeting" not in changes)
        merged["primary_metric"] = exp.primary_metric
        if all(field_as_read(name, getattr(row, name)) == field_as_read(name, value) for name, value in merged.items()):
            return row  # nothing changes, so neither do the revision clients compare nor updated_at
        if row.status == "running":
            _settle(session, ("exposures",))
        for name, value in merged.items():
            setattr(row, name, value)
        row.updated_at = time.time()
        row.revision = row.revision + 1
        return row


def _owned(session: Session, layer: str, but: str | None = None) -> list[Range]:
    """The ranges that running and paused experiments own in a layer."""
    rows = session.execute(
        select(ExperimentRow.key, ExperimentRow.layer_start, ExperimentRow.layer_end).where(
            ExperimentRow.layer == layer, ExperimentRow.status.in_(("running", "paused")), ExperimentRow.layer_start.is_not(None)
        )
    ).all()
    return [Range(k, float(a), float(b)) for k, a, b in rows if k != but and a is not None and b is not None]


def _claim(session: Session, row: ExperimentRow) -> tuple[float, float]:
    """The first free range of the experiment's layer as wide as its traffic; Conflict naming the free share if none fits."""
    assert row.layer is not None
    if session.get_bind().dialect.name == "postgresql":
        # Two starts in one layer must not both take the same gap; SQLite already serialises writers.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:layer, 7))"), {"layer": f"layer:{row.layer}"})
    taken = _owned(session, row.layer, but=row.key)
    claimed = first_fit(taken, row.traffic)
    if claimed is None:
        raise Conflict(
            f"layer {row.layer!r} has no free range of width {row.traffic:g}: {free_share(taken):g} of it is free, "
            f"the widest gap is {largest_gap(taken):g}; {_holders(taken)}; stop one of them or lower this one's traffic"
        )
    return claimed


def _holders(taken: list[Range], named: int = 5) -> str:
    """'held by a [0, 0.5) and b [0.5, 1)': who holds a full layer, so that a refusal says what to stop."""
    ranges = sorted(taken, key=lambda r: r.start)
    shown = [f"{r.experiment} [{r.start:g}, {r.end:g})" for r in ranges[:named]]
    if len(ranges) > named:
        shown.append(f"{len(ranges) - named} more")
    return "held by " + (shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1])


def layer_ranges(db: Database, layer: str) -> list[Range]:
    """The ranges running and paused experiments own in a layer, in position order."""
    with db.read() as session:
        return sorted(_owned(session, layer), key=lambda r: r.start)


def remove(db: Database, key: str) -> None:
    """Delete a draft; 409 for any other status."""
    with db.write() as session:
        row = session.get(ExperimentRow, key, with_for_update=True)
        if row is None:
            raise NotFound("experiment", key)
        if row.status != "draft":
            keep = "; stop it instead, which keeps its results" if row.status != "stopped" else "; a stopped experiment keeps its results for good"
            raise Conflict(f"only a draft can be deleted: {key!r} is {row.status}{keep}")
        session.execute(delete(ExperimentRow).where(ExperimentRow.key == key))


def start_from(db: Database, key: str, started_at: float) -> None:
    """Date a running experiment's start back to `started_at`: for the demo, whose simulated users
    arrive over the month before it is loaded (the start only moves earlier, never later), and its
    creation with it, so that it was not started before it was made."""
    with db.write() as session:
        session.execute(update(ExperimentRow).where(ExperimentRow.key == key, ExperimentRow.started_at > started_at).values(started_at=started_at))
        session.execute(update(ExperimentRow).where(ExperimentRow.key == key, ExperimentRow.created_at > started_at).values(created_at=started_at))


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
        rows = self._session.execute(select(ExperimentRow.arms).where(ExperimentRow.status.in_(("running", "paused")), ExperimentRow.key != self._key))
        return [list(arms) for (arms,) in rows]


def move(
    db: Database, key: str, action: str, check_start: Callable[[list[dict[str, Any]], StartCheck], None] | None = None,
    on_stop: Callable[[Session, str, float], None] | None = None,
) -> ExperimentRow:
    """Start, pause or stop: an atomic compare-and-set on the status, 409 if it does not allow the move.

    `check_start` sees the arms a start starts with, under the row's lock, so that no change to a
    draft comes between the check and the start, and what else it may read (`StartCheck`); it raises to refuse. `on_stop` runs in a stop's
    transaction with the experiment's key and the time it stops at.
    """
    with db.write() as session:
        row = session.get(ExperimentRow, key, with_for_update=_CHANGE_LOCK)
        if row is None:
            raise NotFound("experiment", key)
        try:
            new = transition(row.status, action)  # type: ignore[arg-type]
        except TransitionError as exc:
            raise Conflict(str(exc)) from None
        # A pause or a stop: no enrolment in flight may land after it returns; a stop: nor an outcome dated after it.
        stopping = action == "stop"
        _settle(session, (("outcomes",) if stopping else ()) + (("exposures",) if row.status == "running" else ()) + (("reward_states",) if stopping else ()))
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
            values["layer_start"], values["layer_end"] = _claim(session, row)
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
