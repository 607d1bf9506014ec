"""Model versions: request a training run, run it (in a thread or a child process), activate, roll back."""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from recommender.index import ServingIndex
from recommender.matrix import MatrixSettings, build_matrix
from recommender.models import ALGORITHMS, make_recommender
from recommender.training import TrainingSettings, train
from service.config import Config
from service.errors import Invalid, NotFound
from service.store import event_log
from service.store import model_versions as store
from service.store.artifacts import write_artifact_file
from service.store.database import Database
from service.store.model_versions import ModelRecord
from service.store.state import shared_state

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


# Where each setting that is not a model parameter belongs, for a helpful refusal.
_SETTING_HOMES = {**{f.name: "matrix" for f in fields(MatrixSettings)}, **{f.name: "evaluation" for f in fields(TrainingSettings)}}


@dataclass(frozen=True)
class TrainingPlan:
    """A validated request: the model's parameters, the matrix settings and the evaluation settings, each on its own."""

    algorithm: str
    params: dict[str, Any]
    matrix: MatrixSettings
    evaluation: TrainingSettings


def plan(algorithm: str, params: Mapping[str, Any], matrix: Mapping[str, Any], evaluation: Mapping[str, Any], default_weights: Mapping[str, float]) -> TrainingPlan:
    """Validate each part of a training request; Invalid names the part and the bad value."""
    try:
        make_recommender(algorithm, params)
    except (TypeError, ValueError) as exc:
        misplaced = sorted(set(params) & _SETTING_HOMES.keys())
        hint = f"; {misplaced[0]!r} is a setting of '{_SETTING_HOMES[misplaced[0]]}', send it there" if misplaced else ""
        raise Invalid.field("params", f"{exc}{hint}") from None
    try:
        settings = MatrixSettings(**{"weights": dict(default_weights), **matrix})
    except (TypeError, ValueError) as exc:
        raise Invalid.field("matrix", str(exc)) from None
    try:
        training = TrainingSettings(**evaluation)
    except (TypeError, ValueError) as exc:
        raise Invalid.field("evaluation", str(exc)) from None
    return TrainingPlan(algorithm, dict(params), settings, training)


def new_version() -> str:
    """A sortable, unique version name."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def request_training(db: Database, config: Config, algorithm: str, params: Mapping[str, Any], activate: bool, matrix: Mapping[str, Any] | None = None, evaluation: Mapping[str, Any] | None = None) -> ModelRecord:
    """Validate and record a training run in status `training`."""
    plan(algorithm, params, matrix or {}, evaluation or {}, config.event_weights)
    return store.insert(db, new_version(), algorithm, dict(params), dict(matrix or {}), dict(evaluation or {}), activate)


def _train(db: Database, config: Config, record: ModelRecord, say: Progress, show_progress: bool, started: float) -> None:
    p = plan(record.algorithm, record.params, record.matrix, record.evaluation, config.event_weights)
    snapshot = event_log.read(db)
    events = snapshot.events
    say(f"read {len(events):,} events from {len(snapshot.segment_ids):,} training-log segments")
    if snapshot.fragmented:
        replaced = event_log.compact(db, snapshot)
        say(f"merged {replaced:,} small training-log segments")
    load_seconds = time.perf_counter() - started
    matrix = build_matrix(events, p.matrix, now=time.time())
    say(f"matrix: {matrix.shape[0]:,} users x {matrix.shape[1]:,} items, {matrix.confidence.nnz:,} interactions")
    matrix_seconds = time.perf_counter() - started - load_seconds
    trained = train(matrix, p.algorithm, p.params, p.evaluation, progress=say, show_progress=show_progress)
    index = ServingIndex.from_trained(record.version, trained, p.matrix)
    artifact = index.to_bytes()
    write_artifact_file(config.model_dir / f"{record.version}.npz", artifact)
    elapsed = time.perf_counter() - started
    data = {
        "events": len(events),
        "users": matrix.shape[0],
        "items": matrix.shape[1],
        "interactions": int(matrix.confidence.nnz),
        "artifact_bytes": len(artifact),
        "timings": {"load_seconds": round(load_seconds, 3), "matrix_seconds": round(matrix_seconds, 3), **{k: round(v, 3) for k, v in trained.timings.items()}},
    }
    digest = hashlib.sha256(artifact).hexdigest()
    if store.finish(db, record.version, artifact, digest, trained.metrics, data, elapsed, snapshot.last_event_id):
        log.info("training finished", extra={"version": record.version, "seconds": round(elapsed, 3), "metrics": trained.metrics})
    else:
        log.warning("training finished after the run was reported failed; keeping it failed", extra={"version": record.version})


def run_training(db: Database, config: Config, version: str, progress: Progress | None = None, show_progress: bool = False) -> ModelRecord:
    """Train a recorded version from the stored events; a failure marks it failed and activates nothing."""
    say = progress or (lambda msg: log.info(msg, extra={"version": version}))
    record = store.get(db, version)
    if record is None:
        raise LookupError(f"model version {version} does not exist")
    started = time.perf_counter()
    try:
        _train(db, config, record, say, show_progress, started)
    except Exception as exc:
        log.exception("training failed", extra={"version": version})
        store.fail(db, version, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    final = store.get(db, version)
    assert final is not None
    return final


def start_training(db: Database, config: Config, version: str) -> None:
    """Run training in the background so that the request returns at once."""
    if config.training_runner == "thread":
        threading.Thread(target=run_training, args=(db, config, version), name=f"train-{version}", daemon=True).start()
        return
    config.model_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.model_dir / f"{version}.log"
    env = {**os.environ, **config.as_env(), "OPENBLAS_NUM_THREADS": "1"}
    with open(log_path, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "service.usecases.train_job", version],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the gunicorn worker that started it
        )
    log.info("training started", extra={"version": version, "log": str(log_path)})


def activate(db: Database, version: str) -> ModelRecord:
    """Make a ready version the one every worker serves (also a rollback)."""
    record = store.activate(db, version)
    if record is None:
        raise NotFound("model version", version)
    return record


def active_version(db: Database) -> str | None:
    """The version every worker serves."""
    return shared_state(db).active_version


def _settled(db: Database, config: Config, record: ModelRecord) -> ModelRecord:
    """The record, marked failed first if its run can no longer be alive."""
    if record.status != "training" or time.time() - record.created_at <= config.training_timeout_seconds:
        return record
    store.fail(db, record.version, f"training did not finish within {config.training_timeout_seconds:.0f} s; its process has gone")
    return store.get(db, record.version) or record


def get_version(db: Database, config: Config, version: str) -> ModelRecord:
    """One version; NotFound if there is none."""
    record = store.get(db, version)
    if record is None:
        raise NotFound("model version", version)
    return _settled(db, config, record)


def list_versions(db: Database, config: Config) -> list[ModelRecord]:
    """Every version, newest first."""
    return [_settled(db, config, r) for r in store.list_all(db)]

