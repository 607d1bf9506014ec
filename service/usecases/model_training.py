"""Model versions: request a training run, run it (in a thread or a child process), activate, roll back.

A run's process can die without a word (`kill -9`, the OOM killer, a lost
host), so the runner records itself as `host:pid` and refreshes a heartbeat;
any reader fails a `training` run that has gone silent. Hosts sharing one
database compare their clocks through the heartbeat, so those clocks must
agree to well within the stale bound (NTP does).
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator, Mapping

from recommender.ann import AnnSettings
from recommender.base import CannotTrain, FitStopped
from recommender.index import ServingIndex
from recommender.matrix import MAX_SETTING, MatrixSettings, build_matrix
from recommender.models import ALGORITHMS, make_recommender
from recommender.settings import checked
from recommender.training import TrainingSettings, train
from service.config import Config
from service.errors import HostCannot, Invalid, NotFound, Unavailable
from service.store import event_log
from service.store import model_versions as store
from service.store.artifacts import cache_artifact_file
from service.store.database import Database
from service.store.model_versions import ModelRecord
from service.store.state import shared_state
from service.timestamps import iso
from service.usecases.model_tuning import Stopped, TrialProgress, TunePlan, plan_tuning, search

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
# How often a fit in progress asks whether its run was cancelled (a read of the database).
STOP_CHECK_SECONDS = 0.5
# A child process may take this long to import its libraries and send its first heartbeat.
START_GRACE_SECONDS = 30.0


# Where each setting that is not a model parameter belongs, for a helpful refusal.
_SETTING_HOMES = {**{f.name: "matrix" for f in fields(MatrixSettings)}, **{f.name: "evaluation" for f in fields(TrainingSettings)}}


@dataclass(frozen=True)
class TrainingPlan:
    """A validated request: the model's parameters, the matrix settings and the evaluation settings, each on its own."""

    algorithm: str
    params: dict[str, Any]
    matrix: MatrixSettings
    evaluation: TrainingSettings
    tune: TunePlan | None = None


def plan(
    algorithm: str, params: Mapping[str, Any], matrix: Mapping[str, Any], evaluation: Mapping[str, Any], default_weights: Mapping[str, float],
    tune: Mapping[str, Any] | None = None,
) -> TrainingPlan:
    """Validate each part of a training request; Invalid names the part and the bad value."""
    model_type = ALGORITHMS.get(algorithm)
    if model_type is not None and not model_type.REFITS:
        searched = (tune or {}).get("space") or {}
        for field, names in (("params", params), ("tune.space", searched)):
            if "refit_iterations" in names:
                refitting = ", ".join(name for name, cls in ALGORITHMS.items() if cls.REFITS)
                raise Invalid.field(field, f"refit_iterations applies to {refitting} only; {algorithm} refits by fitting again")
    try:
        make_recommender(algorithm, params)
    except (TypeError, ValueError) as exc:
        misplaced = sorted(set(params) & _SETTING_HOMES.keys())
        hint = f"; {misplaced[0]!r} is a setting of '{_SETTING_HOMES[misplaced[0]]}', send it there" if misplaced else ""
        raise Invalid.field("params", f"{exc}{hint}") from None
    try:
        settings = checked(MatrixSettings, {"weights": dict(default_weights), **matrix})
        settings.check_bounds()
    except (TypeError, ValueError) as exc:
        raise Invalid.field("matrix", str(exc)) from None
    try:
        training = checked(TrainingSettings, evaluation)
    except (TypeError, ValueError) as exc:
        raise Invalid.field("evaluation", str(exc)) from None
    return TrainingPlan(algorithm, dict(params), settings, training, plan_tuning(algorithm, params, tune))


def new_version() -> str:
    """A sortable, unique version name."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def _within_bound(part: str, value: Any) -> None:
    """A new request's numbers stay within MAX_SETTING, as its matrix settings do; versions stored before keep theirs."""
    if isinstance(value, Mapping):
        for name, inner in value.items():
            _within_bound(f"{part}.{name}", inner)
    elif isinstance(value, list):  # a range [low, high] or a list of choices: the error names the setting
        for inner in value:
            _within_bound(part, inner)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and not abs(value) <= MAX_SETTING:
        raise Invalid.field(part, f"must be at most {MAX_SETTING:g} in magnitude")


def request_training(
    db: Database, config: Config, algorithm: str, params: Mapping[str, Any], activate: bool, matrix: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None, tune: Mapping[str, Any] | None = None,
) -> ModelRecord:
    """Validate and record a training run in status `training`; with `tune`, a search for its parameters first."""
    _within_bound("params", params)
    _within_bound("evaluation", evaluation or {})
    _within_bound("tune.space", (tune or {}).get("space") or {})
    p = plan(algorithm, params, matrix or {}, evaluation or {}, config.event_weights, tune)
    stored_tune = p.tune.stored() if p.tune is not None else None
    for record in store.list_all(db):  # a dead run must not hold a place
        if record.status == "training":
            _settled(db, config, record)
    return store.insert(
        db, new_version(), algorithm, dict(params), dict(matrix or {}), dict(evaluation or {}), activate, stored_tune,
        config.training_max_runs, config.training_stale_seconds,
    )


def _train(
    db: Database, config: Config, record: ModelRecord, say: Progress, show_progress: bool, started: float, on_trial: TrialProgress | None
) -> None:
    p = plan(record.algorithm, record.params, record.matrix, record.evaluation, config.event_weights, record.tune)
    stop_check = _at_most_every(STOP_CHECK_SECONDS, lambda: _stopped(db, record.version))
    snapshot = event_log.read(db)
    events = snapshot.events
    say(f"read {len(events):,} events from {len(snapshot.segment_ids):,} training-log segments")
    if snapshot.fragmented:
        replaced = event_log.compact(db, snapshot)
        say(f"merged {replaced:,} small training-log segments" if replaced else "another run merged the training-log segments first")
    load_seconds = time.perf_counter() - started
    matrix = build_matrix(events, p.matrix, now=time.time())
    say(f"matrix: {matrix.shape[0]:,} users x {matrix.shape[1]:,} items, {matrix.confidence.nnz:,} interactions")
    matrix_seconds = time.perf_counter() - started - load_seconds
    params, tuning_seconds = p.params, 0.0
    if p.tune is not None:
        if matrix.confidence.nnz == 0:  # said before the trials, not after them
            raise CannotTrain("there are no events with a positive weight to train on")
        params = search(db, record.version, matrix.confidence, p.algorithm, p.params, p.evaluation, p.tune, say, stop_check, on_trial)
        tuning_seconds = time.perf_counter() - started - load_seconds - matrix_seconds
    trained = train(matrix, p.algorithm, params, p.evaluation, progress=say, show_progress=show_progress, should_stop=stop_check)
    index = ServingIndex.from_trained(record.version, trained, p.matrix, AnnSettings(min_items=config.ann_min_items, precomputed_users=config.ann_precomputed_users))
    if index.ann is not None:
        say(f"indexed {index.n_items:,} items for approximate search in {index.ann_seconds:.1f} s")
    artifact = index.to_bytes()
    elapsed = time.perf_counter() - started
    data = {
        "events": len(events),
        "users": matrix.shape[0],
        "items": matrix.shape[1],
        "interactions": int(matrix.confidence.nnz),
        "artifact_bytes": len(artifact),
        **trained.model.fit_report(),
        "timings": {"load_seconds": round(load_seconds, 3), "matrix_seconds": round(matrix_seconds, 3), **{k: round(v, 3) for k, v in trained.timings.items()}},
        "ann": index.ann_report(),
    }
    if index.ann is not None:
        data["timings"]["index_seconds"] = round(index.ann_seconds, 3)
    if p.tune is not None:
        data["progress"] = {"trials_done": p.tune.settings.trials, "trials": p.tune.settings.trials}
        data["timings"]["tuning_seconds"] = round(tuning_seconds, 3)
    digest = hashlib.sha256(artifact).hexdigest()
    chosen = params if p.tune is not None else None
    if store.finish(db, record.version, artifact, digest, trained.metrics, data, elapsed, snapshot.last_event_id, chosen):
        # After the database has it: a model folder this host cannot write must not cost a finished model.
        cache_artifact_file(config.model_dir / f"{record.version}.npz", artifact)
        log.info("training finished", extra={"version": record.version, "seconds": round(elapsed, 3), "metrics": trained.metrics})
        if record.activate_when_ready:
            served = active_version(db) == record.version
            log.info("model activated" if served else "model not activated", extra={"version": record.version, "by": "training", "algorithm": record.algorithm})
    else:
        log.warning("training finished after the run was cancelled or reported failed; keeping it so", extra={"version": record.version})


def _at_most_every(seconds: float, check: Callable[[], bool]) -> Callable[[], bool]:
    """`check`, asked at most once in `seconds` (its last answer in between): a fit asks between iterations,
    which may come hundreds a second, and each ask reads the database."""
    asked_at, answer = float("-inf"), False

    def throttled() -> bool:
        nonlocal asked_at, answer
        if time.monotonic() - asked_at >= seconds:
            asked_at, answer = time.monotonic(), check()
        return answer

    return throttled


def _stopped(db: Database, version: str) -> bool:
    """Whether the run has been cancelled or reported failed: read from the database, so that any process can stop it."""
    try:
        return store.status(db, version) != "training"
    except Unavailable:  # a blip must not fail the run; the final write checks the status again
        return False


def runner_name() -> str:
    """Who runs training in this process, as `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_training(
    db: Database, config: Config, version: str, progress: Progress | None = None, show_progress: bool = False, on_trial: TrialProgress | None = None
) -> ModelRecord:
    """Train a recorded version from the stored events; a failure marks it failed, and a failed or cancelled run activates nothing."""
    report = progress or (lambda msg: log.info(msg, extra={"version": version}))

    def say(message: str) -> None:
        # Every stage reports through here, so a cancelled run stops at its next stage.
        if _stopped(db, version):
            raise Stopped
        report(message)

    record = store.get(db, version)
    if record is None:
        raise LookupError(f"model version {version} does not exist")
    if not store.beat(db, version, runner_name()):
        log.warning("not training a run that is no longer `training`", extra={"version": version})
        return store.get(db, version) or record
    started = time.perf_counter()
    with _heartbeats(db, config, version):
        try:
            _train(db, config, record, say, show_progress, started, on_trial)
        except (Stopped, FitStopped):
            log.warning("training stopped: the run was cancelled or reported failed", extra={"version": version})
        except CannotTrain as exc:  # a model's refusal: a sentence written for the reader, not a fault
            log.warning("training refused", extra={"version": version, "error": str(exc)})
            store.fail(db, version, str(exc), time.perf_counter() - started)
        except Exception as exc:
            log.exception("training failed", extra={"version": version})
            # Anything else keeps its type, often its only clue.
            store.fail(db, version, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    final = store.get(db, version)
    if final is None:  # the database was emptied under the run (a test's teardown, a restore from backup)
        log.warning("the training run's version is gone from the database", extra={"version": version})
        return record
    return final


@contextmanager
def _heartbeats(db: Database, config: Config, version: str) -> Iterator[None]:
    """Refresh the run's heartbeat from a thread of its own while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(config.training_heartbeat_seconds):
            try:
                if not store.beat(db, version):
                    # Cancelled or reported failed meanwhile (`finish` will keep it so): the process still
                    # works until it notices, and holds its place under TRAINING_MAX_RUNS till then.
                    store.still_running(db, version)
            except Unavailable:
                log.warning("could not send a training heartbeat; trying again", extra={"version": version})

    thread = threading.Thread(target=beat, name=f"heartbeat-{version}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            store.exited(db, version)
        except Unavailable:  # its heartbeat goes stale instead: the place is free TRAINING_STALE_SECONDS later
            log.warning("could not record that the training process is done", extra={"version": version})


def start_training(db: Database, config: Config, version: str) -> None:
    """Run training in the background so that the request returns at once."""
    if config.training_runner == "thread":
        threading.Thread(target=run_training, args=(db, config, version), name=f"train-{version}", daemon=True).start()
        return
    log_path = config.model_dir / f"{version}.log"
    env = {**os.environ, **config.as_env(), "OPENBLAS_NUM_THREADS": "1"}
    try:
        config.model_dir.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "service.usecases.train_job", version],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the gunicorn worker that started it
            )
    except OSError as exc:  # the model folder read-only or full, no process to be had
        said = f"could not start its training process: {exc}"
        store.fail(db, version, said, 0.0)
        # The path stays in the version's error and the log: a client is not told the server's folders.
        raise HostCannot(f"model version {version} could not start training ({exc.strerror or type(exc).__name__}) and is recorded as failed; its error says where") from None
    threading.Thread(target=_reap, args=(db, version, child), name=f"reap-{version}", daemon=True).start()
    log.info("training started", extra={"version": version, "log": str(log_path)})


def _reap(db: Database, version: str, child: subprocess.Popen[bytes]) -> None:
    """Wait for a training child and fail its run if it died without saying so."""
    # Unreaped, a killed child stays a zombie, which `_process_gone` cannot tell from a live process.
    code = child.wait()
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    if store.fail(db, version, f"its training process {how} before finishing (runner {socket.gethostname()}:{child.pid})"):
        log.error("training process died", extra={"version": version, "exit_code": code})


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

