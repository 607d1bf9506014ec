"""Artifacts: any size read back whole from the database, checked against their digest, cached by many processes at once."""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from service.store import artifacts, model_versions
from service.store.artifacts import ArtifactUnusable, artifact_bytes, write_artifact_file
from service.store.database import Database


def _stored_version(db: Database, version: str, data: bytes, digest: str | None = None) -> None:
    model_versions.insert(db, version, "als", {}, {}, {"evaluate": False}, activate=False)
    model_versions.finish(db, version, data, digest or hashlib.sha256(data).hexdigest(), {}, {}, 0.0, 0)


def test_an_artifact_bigger_than_a_read_comes_back_whole_and_is_cached(db, tmp_path, monkeypatch):
    # PostgreSQL refuses to send one bytea over 512 MB (as hex, over 1 GB): reads go in chunks.
    monkeypatch.setattr(artifacts, "READ_CHUNK_BYTES", 1_000)
    data = os.urandom(10_500)
    _stored_version(db, "v-big", data)
    path = tmp_path / "v-big.npz"
    assert artifact_bytes(db, "v-big", path) == data
    assert path.read_bytes() == data
    path.write_bytes(b"stale")  # a file that no longer matches the digest is fetched again
    assert artifact_bytes(db, "v-big", path) == data


def test_a_stored_artifact_that_does_not_match_its_digest_is_refused(db, tmp_path):
    _stored_version(db, "v-bad", b"the bytes", digest=hashlib.sha256(b"other bytes").hexdigest())
    with pytest.raises(ArtifactUnusable, match="does not match its recorded digest; activate another version"):
        artifact_bytes(db, "v-bad", tmp_path / "v-bad.npz")
    assert not (tmp_path / "v-bad.npz").exists()


def _write_many(path: str, payload: bytes) -> None:
    for _ in range(30):
        write_artifact_file(Path(path), payload)


def test_processes_whose_thread_ids_coincide_cache_the_same_file_safely(tmp_path, monkeypatch):
    # Thread ids are addresses and repeat across processes; here they are made to coincide.
    monkeypatch.setattr(threading, "get_ident", lambda: 12345)
    path = tmp_path / "v.npz"
    payload = os.urandom(200_000)
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_many, args=(str(path), payload)) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [writer.exitcode for writer in writers] == [0, 0, 0, 0]
    assert path.read_bytes() == payload
    assert list(tmp_path.iterdir()) == [path]
