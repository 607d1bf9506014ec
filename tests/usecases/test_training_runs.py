"""Training runs that cannot corrupt the log or hang: concurrent compactions, and runs whose process died."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable

import pytest
from sqlalchemy import select

from recommender.matrix import EVENT_TYPES
from recommender.synthetic import generate
from service.config import Config
from service.store import event_log
from service.store import model_versions as store
from service.store.database import Database
from service.store.events import insert_events
from service.store.tables import EventRow
from service.usecases.model_training import START_GRACE_SECONDS, ModelRecord, _why_dead, request_training
from service.usecases.training_run import start_training
from tests.conftest import wait_for_model, wait_until
from tests.helpers import post_ok, train

CHEAP = {"algorithm": "popularity", "evaluation": {"evaluate": False}}


@pytest.fixture
def config(config: Config) -> Config:
    """The test config with heartbeats fast enough to watch: every 0.5 s, stale after 3 s."""
    return replace(config, training_heartbeat_seconds=0.5, training_stale_seconds=3.0)


def fragment(db: Database, batches: int, prefix: str) -> int:
    """Store `batches` batches of 20 events, one training-log segment each; answer how many were accepted."""
    accepted = 0
    for b in range(batches):
        batch = [{"event_id": f"{prefix}-{b}-{i}", "user_id": f"u{(b + i) % 40}", "item_id": f"i{(b * i) % 25}", "type": "view", "ts": 1.78e9 + b} for i in range(20)]
        accepted += insert_events(db, batch)[0]
    return accepted


def assert_log_holds_every_event_once(db: Database, accepted: int) -> None:
    """The training log holds each stored event exactly once, and the events table holds every accepted one."""
    logged = event_log.read(db).events
    from_log = sorted(zip(logged.user_ids[logged.users], logged.item_ids[logged.items], (EVENT_TYPES[t] for t in logged.types), logged.ts))
    with db.read() as session:
        from_table = sorted(session.execute(select(EventRow.user_id, EventRow.item_id, EventRow.type, EventRow.ts)).tuples().all())
    assert len(from_table) == accepted
    assert len(from_log) == accepted and from_log == from_table


def at_once(*jobs: Callable[[], Any]) -> list[Any]:
    """Run the jobs in threads released together; answer their results, raising the first error."""
    gate = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(k: int) -> None:
        gate.wait()
        try:
            results[k] = jobs[k]()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            results[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def test_concurrent_compactions_of_one_snapshot_keep_every_event_once(db):
    accepted = fragment(db, 150, "a")
    snapshots = [event_log.read(db) for _ in range(4)]
    assert all(s.fragmented for s in snapshots)
    replaced = at_once(*(lambda s=s: event_log.compact(db, s) for s in snapshots), lambda: fragment(db, 30, "during"))
    assert sorted(replaced[:4]) == [0, 0, 0, 150]  # one merged, the others found their segments gone
    assert_log_holds_every_event_once(db, accepted + replaced[4])


def test_compactions_racing_with_reads_and_appends_keep_every_event_once(db):
    accepted = fragment(db, 120, "b")

    def read_and_compact() -> int:
        return event_log.compact(db, event_log.read(db))

    results = at_once(read_and_compact, read_and_compact, read_and_compact, lambda: fragment(db, 40, "during"))
    assert sum(results[:3]) >= 120
    assert_log_holds_every_event_once(db, accepted + results[3])


def test_two_trainings_started_at_once_log_every_event_once(app, auth, db):
    accepted = 0
    for round_ in range(3):
        accepted += fragment(db, 100, f"r{round_}")
        assert event_log.read(db).fragmented
        started = at_once(*(lambda: post_ok(app.test_client(), "/v1/models", CHEAP, auth("editor"), status=202) for _ in range(2)))
        done = [wait_for_model(app.test_client(), auth("editor"), s["version"]) for s in started]
        assert [d["status"] for d in done] == ["ready", "ready"]
        assert [d["data"]["events"] for d in done] == [accepted, accepted]
        assert_log_holds_every_event_once(db, accepted)
    assert train(app.test_client(), auth("editor"), CHEAP)["data"]["events"] == accepted


def load_synthetic(db: Database, n_events: int) -> None:
    """Real-looking behaviour: power-law items and users."""
    data = generate(n_users=2000, n_items=500, n_events=n_events, seed=7)
    rows = [{"event_id": f"s{k}", "user_id": f"u{u}", "item_id": f"i{i}", "type": str(t), "ts": float(ts)} for k, (u, i, t, ts) in enumerate(zip(data.users, data.items, data.types, data.timestamps))]
    insert_events(db, rows)


def spawn_orphan(config: Config, version: str) -> subprocess.Popen[bytes]:
    """The child start_training spawns, but as if the worker that started it had gone: nobody but the test reaps it."""
    env = {**os.environ, **config.as_env(), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "service.usecases.train_job", version], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("started_by", ["worker", "orphan"])
def test_a_killed_training_process_is_reported_failed_and_a_late_finish_cannot_revive_it(client, auth, db, config, started_by):
    load_synthetic(db, 20_000)
    # Slow enough (500 ALS iterations of 128 factors) that it is still training when killed.
    record = request_training(db, config, "als", {"factors": 128, "iterations": 500}, True, evaluation={"evaluate": False})
    orphan = spawn_orphan(config, record.version) if started_by == "orphan" else None
    if orphan is None:
        start_training(db, replace(config, training_runner="subprocess"), record.version)
    first = wait_until(lambda: store.get(db, record.version).heartbeat_at, timeout=60)
    beating = wait_until(lambda: (r := store.get(db, record.version)).heartbeat_at != first and r, timeout=10)
    assert beating.status == "training"
    host, _, pid = beating.runner.rpartition(":")
    assert host == socket.gethostname()
    try:
        os.kill(int(pid), signal.SIGKILL)
        killed = time.monotonic()
        if orphan is not None:
            orphan.wait()  # as init would
        else:
            # The worker's reaper records the signal; a poll that came first, once the heartbeat is stale and
            # the pid gone, would record "is gone" instead, by timing alone.
            for thread in threading.enumerate():
                if thread.name == f"reap-{record.version}":
                    thread.join(30)
                    assert not thread.is_alive()
        headers = auth("editor")
        failed = wait_until(lambda: (b := client.get(f"/v1/models/{record.version}", headers=headers).get_json())["status"] != "training" and b, timeout=config.training_stale_seconds + 5)
        assert time.monotonic() - killed < config.training_stale_seconds + 3
    finally:
        if orphan is not None and orphan.poll() is None:
            orphan.kill()
            orphan.wait()
    assert failed["status"] == "failed" and "training process" in failed["error"] and beating.runner in failed["error"]
    assert ("killed by signal 9" if orphan is None else "is gone") in failed["error"]
    assert not store.finish(db, record.version, b"late", "0" * 64, {}, {"events": 1}, 1.0, 0)
    after = client.get(f"/v1/models/{record.version}", headers=headers).get_json()
    assert after["status"] == "failed" and after["error"] == failed["error"] and not after["active"]


def status(client, headers: dict[str, str], version: str) -> dict[str, Any]:
    """GET one version, which settles it."""
    return client.get(f"/v1/models/{version}", headers=headers).get_json()  # type: ignore[no-any-return]


def test_a_run_on_another_host_lives_while_it_beats_and_fails_once_silent(client, auth, db, config):
    record = request_training(db, config, "popularity", {}, False)
    headers = auth("editor")
    until = time.monotonic() + config.training_stale_seconds + 1
    while time.monotonic() < until:  # another host's runner, alive: no pid here to check
        assert store.beat(db, record.version, "elsewhere:4242")
        assert status(client, headers, record.version)["status"] == "training"
        time.sleep(config.training_heartbeat_seconds)
    failed = wait_until(lambda: (b := status(client, headers, record.version))["status"] == "failed" and b, timeout=config.training_stale_seconds + 5)
    given_up = store.get(db, record.version)  # the service's own clock, so that a stall in this test cannot move the bound
    assert given_up is not None and given_up.finished_at - given_up.heartbeat_at >= config.training_stale_seconds
    assert "stopped sending heartbeats" in failed["error"] and "runner elsewhere:4242" in failed["error"]
    assert not store.beat(db, record.version)  # the runner, back from a pause, learns it was given up


def test_a_run_whose_process_on_this_host_is_gone_fails_before_the_stale_bound(client, auth, db, config):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = request_training(db, config, "popularity", {}, False)
    assert store.beat(db, record.version, f"{socket.gethostname()}:{gone.pid}")
    headers = auth("editor")
    failed = wait_until(lambda: (b := status(client, headers, record.version))["status"] == "failed" and b, timeout=config.training_stale_seconds + 5)
    given_up = store.get(db, record.version)
    assert given_up is not None and 2 * config.training_heartbeat_seconds <= given_up.finished_at - given_up.heartbeat_at < config.training_stale_seconds
    assert "is gone" in failed["error"] and str(gone.pid) in failed["error"]


def test_the_cli_records_its_runner_and_heartbeat(runner, db):
    insert_events(db, [{"event_id": f"c{k}", "user_id": f"u{k % 5}", "item_id": f"i{k % 3}", "type": "click", "ts": 1.78e9} for k in range(30)])
    result = runner.invoke(args=["train", "--algorithm", "popularity", "--evaluation", "evaluate=false"])
    assert result.exit_code == 0, result.output
    (record,) = store.list_all(db)
    assert record.status == "ready" and record.runner == f"{socket.gethostname()}:{os.getpid()}"
    assert record.heartbeat_at is not None and record.heartbeat_at >= record.created_at


NOW = 1_800_000_000.0


def record_of(**changes: Any) -> ModelRecord:
    """A `training` record created a minute before NOW."""
    return replace(ModelRecord("v", "training", "als", {}, {}, {}, created_at=NOW - 60), **changes)


@pytest.mark.parametrize(
    "record, reason",
    [
        (record_of(heartbeat_at=NOW - 1, runner="elsewhere:1"), None),
        (record_of(heartbeat_at=NOW - 31, runner="elsewhere:1"), "stopped sending heartbeats (last at 2027-01-15T07:59:29Z; runner elsewhere:1)"),
        (record_of(created_at=NOW - START_GRACE_SECONDS + 1), None),
        (record_of(created_at=NOW - START_GRACE_SECONDS - 1), "never sent a heartbeat"),
        (record_of(created_at=NOW - 6 * 3600 - 1, heartbeat_at=NOW - 1), "did not finish within 21600 s"),
    ],
)
def test_why_a_run_is_judged_dead(record, reason):
    found = _why_dead(Config(), record, NOW)
    assert found == reason if reason is None else reason in found


def test_a_damaged_training_log_segment_fails_the_run_naming_it(client, auth, db):
    from sqlalchemy import text

    post_ok(client, "/v1/events", {"events": [{"event_id": f"d{i}", "user_id": f"u{i % 7}", "item_id": f"i{i % 5}", "type": "view"} for i in range(40)]}, auth("storefront"))
    with db.write() as session:
        segment = session.execute(text("SELECT id FROM event_segments ORDER BY id")).scalars().first()
        session.execute(text("UPDATE event_segments SET data = :cut WHERE id = :id"), {"cut": b"\x00" * 10, "id": segment})
    failed = train(client, auth("editor"), CHEAP)
    assert failed["status"] == "failed"
    assert failed["error"] == f"training-log segment {segment} holds 10 bytes where its 40 events need 1,000: the log is damaged; restore the database from a backup"
