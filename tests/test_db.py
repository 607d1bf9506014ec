"""The hot-path read connection: one per thread, replaced when the server drops it."""
from __future__ import annotations

import threading

import pytest


def test_each_thread_reads_on_its_own_connection_and_keeps_it(db):
    if db.is_sqlite:
        pytest.skip("connection identity is visible on PostgreSQL only")
    ident = "SELECT pg_backend_pid()"
    mine = db.fetch(ident)
    assert db.fetch(ident) == mine
    other: list = []
    thread = threading.Thread(target=lambda: other.append(db.fetch(ident)))
    thread.start()
    thread.join()
    assert other and other[0] != mine


def test_a_read_survives_the_server_dropping_its_connection(db):
    if db.is_sqlite:
        pytest.skip("an embedded database has no server to drop connections")
    (pid,), = db.fetch("SELECT pg_backend_pid()")
    with db.engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        conn.commit()
    assert db.fetch("SELECT 41 + 1") == [(42,)]
    assert db.fetch("SELECT pg_backend_pid()") != [(pid,)]
