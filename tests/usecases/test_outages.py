"""A long training run's writes through a short database outage: tried again, safe to repeat, and no traceback."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from service.errors import HostCannot, Unavailable
from service.store import model_versions as store
from service.usecases import outages, training_run
from service.usecases.model_training import request_training


def flaky(failures: int, error: Exception, answer: str = "stored"):
    """A write that fails `failures` times with `error`, then answers; with the calls it saw."""
    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return answer

    return write, calls


@pytest.fixture
def no_waiting(monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(outages.time, "sleep", pauses.append)
    return pauses


def test_a_write_is_tried_again_through_an_outage_with_growing_pauses(no_waiting, caplog):
    write, calls = flaky(4, Unavailable("the database is unavailable (refused); try again shortly"))
    with caplog.at_level(logging.WARNING, logger="service.usecases.outages"):
        assert outages.through_outage("trial", write, seconds=20.0) == "stored"
    assert len(calls) == 5 and no_waiting == [0.5, 1.0, 2.0, 4.0]
    assert [r.getMessage() for r in caplog.records] == ["database unavailable; trying the write again"] * 4


def test_it_gives_up_after_its_bound_and_never_retries_what_an_operator_must_mend(no_waiting):
    write, calls = flaky(100, Unavailable("down"))
    with pytest.raises(Unavailable):
        outages.through_outage("trial", write, seconds=0.0)
    assert len(calls) == 1
    write, calls = flaky(100, HostCannot("the database lacks this release's tables"))
    with pytest.raises(HostCannot):
        outages.through_outage("trial", write, seconds=20.0)
    assert len(calls) == 1


def test_a_trial_and_a_finish_written_twice_are_stored_once(db, config):
    # A write whose answer was lost in an outage is sent again: it must not count twice.
    version = request_training(db, config, "popularity", {}, False).version
    progress = {"trials_done": 1, "trials": 3}
    assert store.add_trial(db, version, {"params": {}, "metric": 0.1, "seconds": 1.0}, progress)
    assert store.add_trial(db, version, {"params": {}, "metric": 0.1, "seconds": 1.0}, progress)
    assert store.add_trial(db, version, None, {"trials_done": 2, "trials": 3}) and store.add_trial(db, version, None, {"trials_done": 2, "trials": 3})
    record = store.get(db, version)
    assert len(record.tuning) == 1 and record.data["progress"] == {"trials_done": 2, "trials": 3}
    assert store.finish(db, version, b"artifact", "a" * 64, {}, {"events": 1}, 1.0, 0)
    assert store.finish(db, version, b"artifact", "a" * 64, {}, {"events": 1}, 1.0, 0)  # the same artifact again: done
    assert not store.finish(db, version, b"other", "b" * 64, {}, {"events": 1}, 1.0, 0)  # another one: not this run's
    assert store.get(db, version).status == "ready"


def test_a_dead_process_met_by_an_outage_is_said_in_one_line_not_a_thread_s_traceback(db, config, monkeypatch, caplog):
    version = request_training(db, config, "popularity", {}, False).version
    monkeypatch.setattr(store, "fail", lambda *args, **kwargs: (_ for _ in ()).throw(Unavailable("the database is unavailable (refused); try again shortly")))
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    with caplog.at_level(logging.ERROR, logger="service.usecases.training_run"):
        training_run._reap(db, version, child)  # raised out of the reaping thread before
    assert [(r.getMessage(), r.exit_code) for r in caplog.records] == [("training process died; could not record it", 2)]


def test_a_process_stopped_from_outside_its_run_is_recorded_saying_where_to_look(db, config):
    version = request_training(db, config, "popularity", {}, False).version
    training_run._reap(db, version, subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"]))  # train_job's exit for an outage
    record = store.get(db, version)
    assert record.status == "failed" and f"exited with code 2 (the database was unavailable, or a setting is wrong: see {version}.log in the model folder)" in record.error


def test_writes_wait_no_longer_than_a_reader_would_wait_before_calling_the_run_dead(config):
    # Past the stale bound a reader reports the run failed, and a write that waited longer would find it so.
    assert training_run.outage_seconds(config) == config.training_stale_seconds - 2 * config.training_heartbeat_seconds == 20.0


def test_a_run_that_meets_an_outage_as_it_starts_waits_it_out_and_trains(db, config, monkeypatch, no_waiting):
    # Its request was answered (202) just before: the run's first read and heartbeat wait for the database.
    from service.store.events import insert_events

    insert_events(db, [{"event_id": f"c{k}", "user_id": f"u{k % 5}", "item_id": f"i{k % 3}", "type": "click", "ts": 1.78e9} for k in range(30)])
    version = request_training(db, config, "popularity", {}, False).version
    for name in ("get", "beat"):
        monkeypatch.setattr(store, name, _failing_first(getattr(store, name), 2))
    assert training_run.run_training(db, config, version).status == "ready"
    assert no_waiting == [0.5, 1.0, 0.5, 1.0]


def _failing_first(real, failures: int):
    calls: list[int] = []

    def call(*args, **kwargs):
        calls.append(1)
        if len(calls) <= failures:
            raise Unavailable("the database is unavailable (terminated); try again shortly")
        return real(*args, **kwargs)

    return call
