"""Model versions: request a training run (and start it), cancel, activate, roll back, and read them with dead runs settled.

A run records itself as `host:pid` and refreshes a heartbeat (`training_run`); any
reader fails a `training` run that has gone silent. Hosts sharing one database
compare their clocks through the heartbeat, so those clocks must agree to well
within the stale bound (NTP does).
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from typing import Any, Mapping

from service.config import Config
from service.errors import NotFound
from service.store import model_versions as store
from service.store.database import Database
from service.store.model_versions import ModelRecord
from service.store.state import shared_state
from service.timestamps import iso
from service.usecases.training_plan import plan, within_bound
from service.usecases.training_run import start_training

log = logging.getLogger(__name__)
# A child process may take this long to import its libraries and send its first heartbeat.
START_GRACE_SECONDS = 30.0


def new_version() -> str:
    """A sortable, unique version name."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def request_training(
    db: Database, config: Config, algorithm: str, params: Mapping[str, Any], activate: bool, matrix: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None, tune: Mapping[str, Any] | None = None,
) -> ModelRecord:
    """Validate and record a training run in status `training`; with `tune`, a search for its parameters first."""
    within_bound("params", params)
    within_bound("evaluation", evaluation or {})
    within_bound("tune.space", (tune or {}).get("space") or {})
    p = plan(algorithm, params, matrix or {}, evaluation or {}, config.event_weights, tune)
    stored_tune = p.tune.stored() if p.tune is not None else None
    list_versions(db, config)  # a dead run must not hold a place
    return store.insert(
        db, new_version(), algorithm, dict(params), dict(matrix or {}), dict(evaluation or {}), activate, stored_tune,
        config.training_max_runs, config.training_stale_seconds, max(config.training_stale_seconds, START_GRACE_SECONDS),
    )


def train(
    db: Database, config: Config, algorithm: str, params: Mapping[str, Any], activate: bool, matrix: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None, tune: Mapping[str, Any] | None = None,
) -> ModelRecord:
    """Record a training run and start it in the background (`request_training`, then `training_run.start_training`)."""
    record = request_training(db, config, algorithm, params, activate, matrix, evaluation, tune)
    start_training(db, config, record.version)
    return record


def cancel(db: Database, version: str) -> ModelRecord:
    """Cancel a run in progress: it activates nothing, and its process stops at its next trial or stage."""
    record = store.cancel(db, version)
    if record is None:
        raise NotFound("model version", version)
    log.info("training cancelled", extra={"version": version})
    return record


def activate(db: Database, version: str) -> ModelRecord:
    """Make a ready version the one every worker serves (also a rollback)."""
    previous = active_version(db)
    record = store.activate(db, version)
    if record is None:
        raise NotFound("model version", version)
    if previous != version:  # activating the version already served changes nothing
        log.info("model activated", extra={"version": version, "by": "hand", "algorithm": record.algorithm, "previous": previous})
    return record


def active_version(db: Database) -> str | None:
    """The version every worker serves."""
    return shared_state(db).active_version


def _settled(db: Database, config: Config, record: ModelRecord) -> ModelRecord:
    """The record, marked failed first if its run can no longer be alive."""
    reason = _why_dead(config, record, time.time()) if record.status == "training" else None
    if reason is None:
        return record
    if store.fail_silent(db, record.version, reason, record.heartbeat_at):
        log.warning("training run reported failed: %s", reason, extra={"version": record.version})
    return store.get(db, record.version) or record


def _why_dead(config: Config, record: ModelRecord, now: float) -> str | None:
    """Why a `training` run can no longer be alive, or None while it may be."""
    if now - record.created_at > config.training_timeout_seconds:
        return f"training did not finish within {config.training_timeout_seconds:.0f} s"
    if record.heartbeat_at is None:
        if now - record.created_at > max(config.training_stale_seconds, START_GRACE_SECONDS):
            return f"its training process never sent a heartbeat (requested at {iso(record.created_at)})"
        return None
    silent = now - record.heartbeat_at
    if silent > config.training_stale_seconds:
        return f"its training process stopped sending heartbeats (last at {iso(record.heartbeat_at)}; runner {record.runner})"
    # Only a late heartbeat makes the pid worth checking: a container with host
    # networking shares its host's name but not its pids.
    if silent > 2 * config.training_heartbeat_seconds and _process_gone(record.runner):
        return f"its training process is gone (last heartbeat at {iso(record.heartbeat_at)}; runner {record.runner})"
    return None


def _process_gone(runner: str | None) -> bool:
    """Whether `runner` names a process on this host that no longer exists."""
    host, _, pid = (runner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        pass
    return False


def get_version(db: Database, config: Config, version: str) -> ModelRecord:
    """One version; NotFound if there is none."""
    record = store.get(db, version)
    if record is None:
        raise NotFound("model version", version)
    return _settled(db, config, record)


def list_versions(db: Database, config: Config) -> list[ModelRecord]:
    """Every version, newest first."""
    return [_settled(db, config, r) for r in store.list_all(db)]


def ready_versions(db: Database) -> list[ModelRecord]:
    """The ready versions, newest first, as stored: a read only (listing also settles dead runs, which writes)."""
    return [r for r in store.list_all(db) if r.status == "ready"]
