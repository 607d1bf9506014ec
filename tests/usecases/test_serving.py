"""The per-process model cache: a version loading does not hold up the versions already loaded."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from service.usecases import serving
from service.usecases.serving import ModelCache
from tests.helpers import train, two_tribes


def test_a_version_loading_does_not_hold_up_the_versions_already_loaded(client, auth, db, config, monkeypatch, tmp_path):
    two_tribes(client, auth("storefront"))
    loaded = train(client, auth("editor"), {"algorithm": "item_knn"})["version"]
    slow = train(client, auth("editor"), {"algorithm": "popularity", "activate": False})["version"]
    cache = ModelCache(db, tmp_path)
    cache.index(loaded)
    reading, release = threading.Event(), threading.Event()
    real = serving.artifact_bytes

    def artifact_bytes(database, version, path):  # noqa: ANN001, ANN202 - the store's own, held up for one version
        if version == slow:
            reading.set()
            assert release.wait(30)
        return real(database, version, path)

    monkeypatch.setattr(serving, "artifact_bytes", artifact_bytes)
    got: dict[str, object] = {}
    loader = threading.Thread(target=lambda: got.setdefault("slow", cache.index(slow, pinned=True)))
    second = threading.Thread(target=lambda: got.setdefault("again", cache.index(slow, pinned=True)))
    loader.start()
    assert reading.wait(30)
    second.start()
    # While the slow version loads, the loaded one answers at once (it waited behind the load before).
    answered = threading.Thread(target=lambda: got.setdefault("loaded", cache.index(loaded)))
    answered.start()
    answered.join(10)
    assert not answered.is_alive() and got["loaded"].version == loaded
    release.set()
    loader.join(30)
    second.join(30)
    assert got["slow"] is got["again"]  # loaded once, by the first to ask


def test_requests_waiting_on_a_load_that_finds_the_artifact_unusable_fail_without_reading_it_again(client, auth, db, monkeypatch, tmp_path):
    from service.errors import HostCannot
    from service.store.artifacts import ArtifactUnusable

    two_tribes(client, auth("storefront"))
    broken = train(client, auth("editor"), {"algorithm": "popularity", "activate": False})["version"]
    cache = ModelCache(db, tmp_path)
    reading, release, reads = threading.Event(), threading.Event(), []

    def artifact_bytes(database, version, path):  # noqa: ANN001, ANN202 - a damaged artifact, found after a while
        reads.append(version)
        reading.set()
        assert release.wait(30)
        raise ArtifactUnusable(version, "is missing from the database")

    monkeypatch.setattr(serving, "artifact_bytes", artifact_bytes)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.index(broken)
        except HostCannot as exc:
            errors.append(exc)

    first = threading.Thread(target=ask)
    first.start()
    assert reading.wait(30)
    waiting = [threading.Thread(target=ask) for _ in range(4)]
    for t in waiting:
        t.start()
    release.set()
    for t in [first, *waiting]:
        t.join(30)
    assert reads == [broken] and len(errors) == 5 and len({e.message for e in errors}) == 1
    ask()  # and later requests within the bound, without a read
    assert reads == [broken] and len(errors) == 6
    monkeypatch.setattr(serving, "time", SimpleNamespace(monotonic=lambda: float("inf")))  # the bound has passed: tried again
    ask()
    assert reads == [broken, broken]
