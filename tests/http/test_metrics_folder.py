"""Folding a dead gunicorn worker's Prometheus files: every total the same before and after, and never a stalled master."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from prometheus_client import CollectorRegistry, multiprocess

from service.http import metrics_folder
from service.http.metrics_folder import fold_dead_worker, scrape_lock

# What a worker does: counts requests and observes latencies, as service.http.observability declares them.
_WORKER = """
import os
import sys
from prometheus_client import Counter, Histogram
requests = Counter("requests_total", "requests", ["endpoint", "status"])
latency = Histogram("latency_seconds", "latency", ["endpoint"], buckets=(0.001, 0.01, 0.1, 1))
seed = int(sys.argv[1])
for k in range(50 + seed):
    requests.labels(f"/e{k % 3}", "200" if k % 7 else "500").inc()
    latency.labels(f"/e{k % 3}").observe((k * seed % 97) / 1000 + 1e-9 * seed)
print(os.getpid())
"""


def _samples(folder) -> dict[tuple, float]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}


def _workers(folder, count: int) -> list[int]:
    """The pids of `count` workers that counted in `folder` and exited."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder), "PATH": ""}
    return [int(subprocess.run([sys.executable, "-c", _WORKER, str(seed)], env=env, check=True, capture_output=True, text=True).stdout)
            for seed in range(1, count + 1)]


def test_folding_keeps_every_total_and_leaves_one_file_of_each_kind(tmp_path):
    pids = _workers(tmp_path, 3)
    before = _samples(tmp_path)
    assert before[("requests_total", (("endpoint", "/e0"), ("status", "200")))] > 0
    for pid in pids:
        assert fold_dead_worker(pid, str(tmp_path))
    after = _samples(tmp_path)
    assert after.keys() == before.keys()
    assert all(after[k] == pytest.approx(v, rel=1e-12) for k, v in before.items())
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_dead.db", "histogram_dead.db"]


def test_a_fold_gives_up_while_a_scrape_holds_the_folder_and_changes_nothing(tmp_path, monkeypatch):
    (pid,) = _workers(tmp_path, 1)
    before = _samples(tmp_path)
    monkeypatch.setattr(metrics_folder, "FOLD_WAIT_SECONDS", 0.1)
    started = time.monotonic()
    with scrape_lock(str(tmp_path)):
        assert not fold_dead_worker(pid, str(tmp_path))
    assert time.monotonic() - started < 5
    assert (tmp_path / f"counter_{pid}.db").exists() and _samples(tmp_path) == before
    assert fold_dead_worker(pid, str(tmp_path)) and _samples(tmp_path).keys() == before.keys()
