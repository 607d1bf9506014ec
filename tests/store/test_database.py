"""The hot-path read connection: one per thread, kept open, replaced when the server drops it."""
from __future__ import annotations

import os
import threading
from typing import Iterator

import pytest

from service.store.database import Database
from tests.conftest import own_postgres_database

PG_URL = os.environ.get("PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _marker(db: Database) -> tuple[str, str, list]:
    """(statement setting a per-connection value, statement reading it, what it reads once set)."""
    if db.is_sqlite:
        return "PRAGMA cache_size = -4321", "PRAGMA cache_size", [(-4321,)]
    return "SELECT set_config('stickyloop.marker', 'set', false)", "SELECT current_setting('stickyloop.marker', true)", [("set",)]


def test_each_thread_reads_on_its_own_connection_and_keeps_it(db):
    # A per-connection setting, set through one thread's reads, is seen by its next read only.
    mark, read, marked = _marker(db)
    db.fetch(mark)
    assert db.fetch(read) == marked
    seen: list = []
    thread = threading.Thread(target=lambda: seen.append(db.fetch(read)))
    thread.start()
    thread.join()
    assert len(seen) == 1 and seen[0] != marked
    assert db.fetch(read) == marked


def test_a_forked_child_reads_on_a_connection_of_its_own(db):
    # A connection shared across fork would interleave two processes' statements on one socket or file handle.
    mark, read, marked = _marker(db)
    db.fetch(mark)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports what its read saw, then leaves without running any cleanup
        try:
            os.write(writer, repr(db.fetch(read)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        child_saw = pipe.read()
    os.waitpid(pid, 0)
    assert child_saw and child_saw != repr(marked)
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
    with own_postgres_database(PG_URL) as url:
        other = Database(url)
        yield other
        other.dispose()


def test_a_read_survives_the_server_dropping_its_connection(postgres):
    (pid,), = postgres.fetch("SELECT pg_backend_pid()")
    with postgres.engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        conn.commit()
    assert postgres.fetch("SELECT 41 + 1") == [(42,)]
    assert postgres.fetch("SELECT pg_backend_pid()") != [(pid,)]
