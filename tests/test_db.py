"""The hot-path read connection: one per thread, kept open, replaced when the server drops it."""
from __future__ import annotations

import os
import threading
from typing import Iterator

import pytest

from service.db import Database

PG_URL = os.environ.get("PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def test_each_thread_reads_on_its_own_connection_and_keeps_it(db):
    # A per-connection setting, set through one thread's reads, is seen by its next read only.
    if db.is_sqlite:
        mark, read, marked = "PRAGMA cache_size = -4321", "PRAGMA cache_size", [(-4321,)]
    else:
        mark, read, marked = "SELECT set_config('stickyloop.marker', 'set', false)", "SELECT current_setting('stickyloop.marker', true)", [("set",)]
    db.fetch(mark)
    assert db.fetch(read) == marked
    seen: list = []
    thread = threading.Thread(target=lambda: seen.append(db.fetch(read)))
    thread.start()
    thread.join()
    assert len(seen) == 1 and seen[0] != marked
    assert db.fetch(read) == marked


def test_a_failed_read_leaves_the_connection_usable(db):
    with pytest.raises(Exception, match="no_such_table"):
        db.fetch("SELECT * FROM no_such_table")
    assert db.fetch("SELECT 41 + 1") == [(42,)]


@pytest.fixture
def postgres(db: Database) -> Iterator[Database]:
    """The suite's database when it is PostgreSQL; otherwise the PostgreSQL that `make test` also runs on."""
    if not db.is_sqlite:
        yield db
        return
    other = Database(PG_URL)
    yield other
    other.dispose()


def test_a_read_survives_the_server_dropping_its_connection(postgres):
    (pid,), = postgres.fetch("SELECT pg_backend_pid()")
    with postgres.engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        conn.commit()
    assert postgres.fetch("SELECT 41 + 1") == [(42,)]
    assert postgres.fetch("SELECT pg_backend_pid()") != [(pid,)]
