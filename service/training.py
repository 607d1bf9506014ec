"""Model versions: request a training run, run it (in a thread or a child process), activate."""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import fields
from typing import Any, Callable, Mapping

from sqlalchemy import select

from recommender.index import ServingIndex
from recommender.matrix import MatrixSettings, build_matrix
from recommender.models import make_recommender
from recommender.training import TrainingSettings, train
from service.config import Config
from service.db import Database
from service.models import ModelArtifact, ModelVersion
from service.serving import ACTIVE_MODEL_KEY, write_artifact_file
from service.stores import event_log
from service.stores.sql import set_state

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
_MATRIX_FIELDS = {f.name for f in fields(MatrixSettings)} - {"weights"}
_TRAINING_FIELDS = {f.name for f in fields(TrainingSettings)}


def split_params(algorithm: str, params: Mapping[str, Any], weights: Mapping[str, float]) -> tuple[dict[str, Any], MatrixSettings, TrainingSettings]:
    """Separate model, matrix and evaluation parameters, validating each; ValueError names the bad one."""
    matrix = {k: v for k, v in params.items() if k in _MATRIX_FIELDS}
    evaluation = {k: v for k, v in params.items() if k in _TRAINING_FIELDS}
    model = {k: v for k, v in params.items() if k not in _MATRIX_FIELDS | _TRAINING_FIELDS}
    try:
        settings = MatrixSettings(weights=dict(params.get("weights", weights)), **matrix)  # type: ignore[arg-type]
        training = TrainingSettings(**evaluation)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    model.pop("weights", None)
    make_recommender(algorithm, model)  # validates the model parameters
    return model, settings, training


def new_version() -> str:
    """A sortable, unique version name."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def request_training(db: Database, config: Config, algorithm: str, params: Mapping[str, Any], activate: bool) -> ModelVersion:
    """Validate and record a training run in status `training`."""
    split_params(algorithm, params, config.event_weights)
    row = ModelVersion(
        version=new_version(),
        status="training",
        algorithm=algorithm,
        params=dict(params),
        metrics={},
        data={},
        activate_when_ready=activate,
        created_at=time.time(),
    )
    with db.write() as session:
        session.add(row)
    return row


def run_training(db: Database, config: Config, version: str, progress: Progress | None = None, show_progress: bool = False) -> ModelVersion:
    """Train a recorded version from the stored events; a failure marks it failed and activates nothing."""
    say = progress or (lambda msg: log.info(msg, extra={"version": version}))
    with db.read() as session:
        row = session.get(ModelVersion, version)
    if row is None:
        raise LookupError(f"model version {version} does not exist")
    started = time.perf_counter()
    try:
        model_params, settings, evaluation = split_params(row.algorithm, row.params, config.event_weights)
        snapshot = event_log.read(db)
        events, up_to = snapshot.events, snapshot.last_event_id
        say(f"read {len(events):,} events from {len(snapshot.segment_ids):,} training-log segments")
        if snapshot.fragmented:
            replaced = event_log.compact(db, snapshot)
            say(f"merged {replaced:,} small training-log segments")
        load_seconds = time.perf_counter() - started
        matrix = build_matrix(events, settings, now=time.time())
        say(f"matrix: {matrix.shape[0]:,} users x {matrix.shape[1]:,} items, {matrix.confidence.nnz:,} interactions")
        matrix_seconds = time.perf_counter() - started - load_seconds
        trained = train(matrix, row.algorithm, model_params, evaluation, progress=say, show_progress=show_progress)
        index = ServingIndex.from_trained(version, trained, settings)
        artifact = index.to_bytes()
        digest = hashlib.sha256(artifact).hexdigest()
        write_artifact_file(config.model_dir / f"{version}.npz", artifact)
        elapsed = time.perf_counter() - started
        data = {
            "events": len(events),
            "users": matrix.shape[0],
            "items": matrix.shape[1],
            "interactions": int(matrix.confidence.nnz),
            "artifact_bytes": len(artifact),
            "timings": {"load_seconds": round(load_seconds, 3), "matrix_seconds": round(matrix_seconds, 3), **{k: round(v, 3) for k, v in trained.timings.items()}},
        }
        with db.write() as session:
            session.add(ModelArtifact(version=version, data=artifact))
            stored = session.get(ModelVersion, version)
            assert stored is not None
            stored.status = "ready"
            stored.metrics = trained.metrics
            stored.data = data
            stored.training_seconds = elapsed
            stored.finished_at = time.time()
            stored.max_event_id = up_to
            stored.artifact_sha256 = digest
            if stored.activate_when_ready:
                set_state(session, ACTIVE_MODEL_KEY, version)
        log.info("training finished", extra={"version": version, "seconds": round(elapsed, 3), "metrics": trained.metrics})
    except Exception as exc:
        log.exception("training failed", extra={"version": version})
        with db.write() as session:
            stored = session.get(ModelVersion, version)
            if stored is not None:
                stored.status = "failed"
                stored.error = f"{type(exc).__name__}: {exc}"
                stored.finished_at = time.time()
                stored.training_seconds = time.perf_counter() - started
    with db.read() as session:
        final = session.get(ModelVersion, version)
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
            [sys.executable, "-m", "service.train_job", version],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the gunicorn worker that started it
        )
    log.info("training started", extra={"version": version, "log": str(log_path)})


def activate(db: Database, version: str) -> ModelVersion | None:
    """Make a ready version the one every worker serves; None when it does not exist."""
    with db.write() as session:
        row = session.get(ModelVersion, version)
        if row is None:
            return None
        if row.status != "ready":
            raise RuntimeError(f"model {version} is {row.status}; only a ready model can be activated")
        set_state(session, ACTIVE_MODEL_KEY, version)
        return row


def active_version(db: Database) -> str | None:
    """The version every worker serves."""
    from service.serving import read_shared_state

    return read_shared_state(db).active_version


def list_versions(db: Database) -> list[ModelVersion]:
    """Every version, newest first."""
    with db.read() as session:
        return list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc())).all())
