"""The per-process model cache: a version loading does not hold up the versions already loaded."""
from __future__ import annotations

import threading

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
