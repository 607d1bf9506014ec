"""The per-process experiment cache stays bounded: definitions of experiments deleted or long unread elsewhere are let go."""
from __future__ import annotations

from service.usecases import experiment_cache
from service.usecases.experiment_cache import ExperimentCache
from tests.experiment_helpers import ab_definition, running


def loads_counted(monkeypatch) -> list[str]:
    loaded: list[str] = []
    real = experiment_cache.experiment_store.load_definition
    monkeypatch.setattr(experiment_cache.experiment_store, "load_definition", lambda db, key: loaded.append(key) or real(db, key))
    return loaded


def test_the_least_recently_read_definitions_go_beyond_the_count(client, auth, db, monkeypatch):
    monkeypatch.setattr(experiment_cache, "REMEMBERED_DEFINITIONS", 3)
    keys = [f"exp-{k}" for k in range(5)]
    for key in keys:
        running(client, auth("editor"), ab_definition(key))
    loaded = loads_counted(monkeypatch)
    cache = ExperimentCache()  # another worker's: it never hears of a deletion, so only the bound frees it
    for key in keys + ["exp-4", "exp-3", "exp-2", "exp-0"]:
        cache.current(db, key)
    assert loaded == keys + ["exp-0"]  # 4, 3 and 2 were still remembered; 0 had gone


def test_definitions_go_beyond_their_bytes_but_the_one_just_read_stays(client, auth, db, monkeypatch):
    monkeypatch.setattr(experiment_cache, "REMEMBERED_DEFINITION_BYTES", 20_000)
    big = {"blob": "x" * 12_000}
    for key in ("big-a", "big-b"):
        body = ab_definition(key)
        body["arms"][0]["payload"] = big
        running(client, auth("editor"), body)
    loaded = loads_counted(monkeypatch)
    cache = ExperimentCache()
    for key in ("big-a", "big-b", "big-b", "big-a"):
        cache.current(db, key)
    assert loaded == ["big-a", "big-b", "big-a"]
