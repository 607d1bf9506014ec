"""One training run, in a thread or a child process: read the events, tune, fit, index, store the artifact.

A run's process can die without a word (`kill -9`, the OOM killer, a lost
host), so the runner records itself as `host:pid` and refreshes a heartbeat;
any reader fails a `training` run that has gone silent (`model_training`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from recommender.ann import AnnSettings
from recommender.base import CannotTrain, FitStopped
from recommender.index import ServingIndex
from recommender.matrix import build_matrix
from recommender.training import train
from service.config import Config
from service.errors import HostCannot, Unavailable
from service.store import event_log
from service.store import model_versions as store
from service.store.artifacts import cache_artifact_file
from service.store.database import Database
from service.store.model_versions import ModelRecord
from service.store.state import shared_state
from service.usecases.model_tuning import Stopped, TrialProgress, search
from service.usecases.outages import through_outage
from service.usecases.training_plan import plan

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
# How often a fit in progress asks whether its run was cancelled (a read of the database).
STOP_CHECK_SECONDS = 0.5


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
        params = search(db, record.version, matrix, p.algorithm, p.params, p.evaluation, p.tune, say, stop_check, on_trial, outage_seconds(config))
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
    if through_outage(
        "finish", lambda: store.finish(db, record.version, artifact, digest, trained.metrics, data, elapsed, snapshot.last_event_id, chosen), outage_seconds(config)
    ):
        # After the database has it: a model folder this host cannot write must not cost a finished model.
        cache_artifact_file(config.model_dir / f"{record.version}.npz", artifact)
        log.info("training finished", extra={"version": record.version, "seconds": round(elapsed, 3), "metrics": trained.metrics})
        if record.activate_when_ready:
            served = shared_state(db).active_version == record.version
            log.info("model activated" if served else "model not activated", extra={"version": record.version, "by": "training", "algorithm": record.algorithm})
    else:
        log.warning("training finished after the run was cancelled or reported failed; keeping it so", extra={"version": record.version})


def outage_seconds(config: Config) -> float:
    """How long a run's writes wait out an outage: past it, its heartbeat (every TRAINING_HEARTBEAT_SECONDS, itself
    waiting for the database) would be older than TRAINING_STALE_SECONDS, and a reader would report the run failed anyway."""
    return max(0.0, config.training_stale_seconds - 2 * config.training_heartbeat_seconds)


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

    # A run starts right after its request was answered: a blip then must not cost it (both are safe to repeat).
    record = through_outage("read the run", lambda: store.get(db, version), outage_seconds(config))
    if record is None:
        raise LookupError(f"model version {version} does not exist")
    if not through_outage("first heartbeat", lambda: store.beat(db, version, runner_name()), outage_seconds(config)):
        log.warning("not training a run that is no longer `training`", extra={"version": version})
        _done(db, version)
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
        except HostCannot as exc:  # what an operator must mend, said as written
            log.error("training failed", extra={"version": version, "error": exc.message})
            store.fail(db, version, exc.message, time.perf_counter() - started)
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
        _done(db, version)


def _done(db: Database, version: str) -> None:
    """Record that this process is done with the run, which frees its place if it was cancelled or failed."""
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
    if code == 2:  # train_job's exit for what stopped it from outside the run: its one line is in the run's own log
        how += f" (the database was unavailable, or a setting is wrong: see {version}.log in the model folder)"
    try:
        if store.fail(db, version, f"its training process {how} before finishing (runner {socket.gethostname()}:{child.pid})"):
            log.error("training process died", extra={"version": version, "exit_code": code})
    except Unavailable as exc:  # its heartbeat goes stale instead, which fails the run later
        log.error("training process died; could not record it", extra={"version": version, "exit_code": code, "error": exc.message})
    _done(db, version)  # however it ended: a process that died without saying so held its place until its heartbeat went stale
