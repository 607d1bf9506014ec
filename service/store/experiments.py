"""Experiment definitions in the database: create, read, change while allowed, delete a draft.

Their moves (start, pause, stop) are in `lifecycle`, their layers' ranges in `layers`.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from experiments.definitions import BUILTIN_METRICS, DESIGN_FIELDS, Experiment
from experiments.layers import Range
from service.errors import ChangedMeanwhile, Conflict, NotFound
from service.store.experiment_codec import DEFINITION_FIELDS, definition, field_as_read, from_row
from service.store.database import Database
from service.store.settling import CHANGE_LOCK, settle
from service.store.sql import insert
from service.store.tables import ExperimentRow


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
    """The stored experiment; NotFound if there is none."""
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
    """Validate and store a new draft; Conflict if the key is taken."""
    exp = definition({**fields, "status": "draft"})
    now = time.time()
    values = {**fields, "primary_metric": exp.primary_metric, "status": "draft", "salt": secrets.token_hex(8), "created_at": now, "updated_at": now, "revision": 1}
    with db.write() as session:
        stmt = insert(session, ExperimentRow).values(**values).on_conflict_do_nothing(index_elements=["key"]).returning(ExperimentRow.key)
        if session.execute(stmt).first() is None:
            raise Conflict(f"an experiment with key {fields['key']!r} already exists")
        return session.get(ExperimentRow, fields["key"])  # type: ignore[return-value]


# The analysis plan: what decides an experiment's reading (its default intervals, adjustment and guardrails).
PLAN_FIELDS = ("analysis", "guardrails")


def patch(db: Database, key: str, changes: dict[str, Any], revision: int | None = None) -> ExperimentRow:
    """Apply changes; design fields only while draft and the analysis plan only until the stop (Conflict), and the result must validate (Invalid).

    With `revision`, only to the experiment at that revision (ChangedMeanwhile otherwise), checked under the row's lock.
    """
    with db.write() as session:
        row = session.get(ExperimentRow, key, with_for_update=CHANGE_LOCK)
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
            settle(session, ("exposures",))
        for name, value in merged.items():
            setattr(row, name, value)
        row.updated_at = time.time()
        row.revision = row.revision + 1
        return row


def remove(db: Database, key: str) -> None:
    """Delete a draft; Conflict for any other status."""
    with db.write() as session:
        row = session.get(ExperimentRow, key, with_for_update=True)
        if row is None:
            raise NotFound("experiment", key)
        if row.status != "draft":
            keep = "; stop it instead, which keeps its results" if row.status != "stopped" else "; a stopped experiment keeps its results for good"
            raise Conflict(f"only a draft can be deleted: {key!r} is {row.status}{keep}")
        session.execute(delete(ExperimentRow).where(ExperimentRow.key == key))
