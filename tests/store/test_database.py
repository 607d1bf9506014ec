"""The hot-path read connection: one per thread, kept open, replaced when the server drops it."""
from __future__ import annotations

import os
import threading
from typing import Iterator

import pytest

from service.store.database import Database
from tests.conftest import own_postgres_database, wait_until

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


def test_a_thread_that_has_ended_leaves_no_connection_open(postgres):
    # A training run under TRAINING_RUNNER=thread reads on a connection of its own; each run's had stayed open.
    def backends() -> set[int]:
        # Client backends alone: an autovacuum worker on this busy database may come and go meanwhile.
        return {pid for (pid,) in postgres.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'")}

    postgres.fetch("SELECT 1")
    before = backends()
    for _ in range(5):
        thread = threading.Thread(target=lambda: postgres.fetch("SELECT 1"))
        thread.start()
        thread.join()
    last: list = []
    thread = threading.Thread(target=lambda: last.append(postgres.fetch("SELECT pg_backend_pid()")[0][0]))
    thread.start()
    thread.join()
    # The ended threads' closed as the next one opened its own (a closed backend leaves the server's list a moment later).
    assert wait_until(lambda: backends() - before <= {last[0]}, 10)


def test_a_read_survives_the_server_dropping_its_connection(postgres):
    (pid,), = postgres.fetch("SELECT pg_backend_pid()")
    with postgres.engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        conn.commit()
    assert postgres.fetch("SELECT 41 + 1") == [(42,)]
    assert postgres.fetch("SELECT pg_backend_pid()") != [(pid,)]


# What psycopg's own cursor answers for each parameter: the hot reads send parameters through
# libpq directly (service/store/prepared.py) and must not differ from it in any value or type.
PARAMETERS = [None, True, False, 0, -1, 2**31, -(2**63), 2**63 - 1, 2**63, 10**30, 1.5, -0.0, 1e308, -1e-308,
              float("inf"), float("-inf"), "", "héllo ✓", "'; DROP TABLE x; --", "x" * 10_000, "?", "$1"]


def _cursor_answer(db: Database, sql: str, params: tuple) -> list:
    with db.engine.connect() as conn:
        cur = conn.connection.dbapi_connection.cursor()
        cur.execute(sql.replace("?", "%s"), params)
        return cur.fetchall()


@pytest.mark.parametrize("value", PARAMETERS, ids=[repr(p)[:24] for p in PARAMETERS])
def test_a_parameter_reads_back_as_the_drivers_cursor_reads_it(postgres, value):
    statements = ["SELECT ?", "SELECT ?::text IS NULL, ?::text"]
    if not isinstance(value, str) and value is not None:  # the server infers a string's type from its use
        statements.append("SELECT pg_typeof(?)::text")
    for sql in statements:
        params = (value,) * sql.count("?")
        expected = _cursor_answer(postgres, sql, params)
        assert postgres.fetch(sql, params) == expected
        assert postgres.fetch(sql, params) == expected  # prepared by now


def test_not_a_number_reads_back_as_not_a_number(postgres):
    ((value, kind),) = postgres.fetch("SELECT ?, pg_typeof(?)::text", (float("nan"), float("nan")))
    assert value != value and kind == "double precision"


def test_a_text_parameter_with_a_nul_fails_as_the_cursor_fails_instead_of_being_cut_short(postgres):
    import psycopg

    with pytest.raises(psycopg.DataError, match="NUL"):
        postgres.fetch("SELECT ? = 'a'", ("a\x00b",))
    assert postgres.fetch("SELECT 41 + 1") == [(42,)]


def test_errors_are_the_drivers_own_and_leave_the_connection_usable(postgres):
    import psycopg

    with pytest.raises(psycopg.errors.SyntaxError):
        postgres.fetch("SELEC 1")
    (pid,), = postgres.fetch("SELECT pg_backend_pid()")
    with pytest.raises(psycopg.errors.DivisionByZero):
        postgres.fetch("SELECT 1 / ?", (0,))
    postgres.fetch("CREATE TEMPORARY TABLE IF NOT EXISTS short_ids (id varchar(3))")
    with pytest.raises(psycopg.errors.StringDataRightTruncation):  # an id longer than its column
        postgres.fetch("INSERT INTO short_ids VALUES (?)", ("abcd",))
    assert postgres.fetch("SELECT 1 / ?", (1,)) == [(1,)]
    assert postgres.fetch("SELECT pg_backend_pid()") == [(pid,)]  # a bad value is not worth a new connection


def test_a_connection_keeps_the_most_recently_used_statements_prepared(postgres):
    from service.store.prepared import MAX_PREPARED

    def prepared() -> int:
        return postgres.fetch("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '\\_stickyloop\\_%'")[0][0]

    postgres.fetch("SELECT 1 WHERE ? = 'one-off'", ("x",))  # a one-off takes no slot
    before = prepared()
    for k in range(MAX_PREPARED + 10):  # every IN-list length a client could send, each twice
        sql = f"SELECT count(*) FROM (VALUES {', '.join(['(?)'] * (k + 1))}) AS v"
        for _ in range(2):
            assert postgres.fetch(sql, tuple(range(k + 1))) == [(k + 1,)]
    assert before <= MAX_PREPARED and prepared() == MAX_PREPARED
    assert postgres.fetch("SELECT ? + 1", (41,)) == [(42,)] == postgres.fetch("SELECT ? + 1", (41,))  # still prepared, evicting the oldest
    assert prepared() == MAX_PREPARED


def test_a_question_mark_inside_a_literal_stays_text(postgres):
    assert postgres.fetch("SELECT '?', 'it''s ?', ?::int", (1,)) == [("?", "it's ?", 1)]


def test_a_wrong_number_of_parameters_is_a_programming_error_not_an_outage(postgres):
    import psycopg

    from service.errors import Unavailable

    with pytest.raises(psycopg.ProgrammingError) as raised:
        postgres.fetch("SELECT ?, ?", (1,))
    assert not isinstance(raised.value, (psycopg.OperationalError, Unavailable))


def test_a_command_answers_no_rows_and_runs_once_on_either_path(postgres):
    postgres.fetch("CREATE TABLE IF NOT EXISTS commands (n integer)")
    try:
        assert postgres.fetch("INSERT INTO commands SELECT length(?)", ("ab",)) == []
        assert postgres.fetch("INSERT INTO commands SELECT length(?)", (b"abc",)) == []  # bytes: through the cursor
        assert postgres.fetch("SELECT n FROM commands ORDER BY n") == [(2,), (3,)]
    finally:
        postgres.fetch("DROP TABLE commands")


def test_a_statement_prepared_before_a_schema_change_answers_the_new_shape(postgres):
    # The server refuses the old plan ("cached plan must not change result type"); the read is
    # retried once on a new connection, which prepares the statement afresh.
    postgres.fetch("CREATE TABLE IF NOT EXISTS reshaped (x integer)")
    try:
        postgres.fetch("INSERT INTO reshaped VALUES (?)", (1,))
        assert postgres.fetch("SELECT * FROM reshaped") == [(1,)] == postgres.fetch("SELECT * FROM reshaped")
        postgres.fetch("ALTER TABLE reshaped ADD COLUMN y integer DEFAULT 2")
        assert postgres.fetch("SELECT * FROM reshaped") == [(1, 2)]
    finally:
        postgres.fetch("DROP TABLE reshaped")


def test_a_migration_that_outdates_prepared_plans_costs_one_503_not_one_per_connection(postgres):
    # psycopg prepares a statement run five times on a pooled connection; a migration that changes what it
    # returns fails it ("cached plan must not change result type") on each connection holding it.
    from contextlib import ExitStack

    from sqlalchemy import text

    from service.errors import Unavailable

    with postgres.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS plan_probe")
        conn.exec_driver_sql("CREATE TABLE plan_probe (x integer)")
        conn.exec_driver_sql("INSERT INTO plan_probe VALUES (1)")
    try:
        with ExitStack() as held:  # three connections at once, each with the statement prepared
            sessions = [held.enter_context(postgres.read()) for _ in range(3)]
            for session in sessions:
                for _ in range(6):
                    assert list(session.execute(text("SELECT * FROM plan_probe"))) == [(1,)]

        def read() -> list:
            with postgres.read() as session:
                return list(session.execute(text("SELECT * FROM plan_probe")))

        migrator = Database(postgres.engine.url.render_as_string(hide_password=False))  # another process, as init-db is
        with migrator.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE plan_probe ALTER COLUMN x TYPE bigint")
        with pytest.raises(Unavailable, match="schema changed under a prepared statement"):
            read()
        assert [read() for _ in range(5)] == [[(1,)]] * 5  # the pool went with the first: no connection holds the old plan
        assert postgres.fetch("SELECT * FROM plan_probe") == [(1,)]  # a thread's own prepared read replaces its stale plan
        for _ in range(6):
            postgres.fetch("SELECT * FROM plan_probe")
        with migrator.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE plan_probe ALTER COLUMN x TYPE integer")
        migrator.dispose()
        assert postgres.fetch("SELECT * FROM plan_probe") == [(1,)]
    finally:
        with postgres.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE plan_probe")


def test_a_host_whose_link_stalls_mid_transaction_releases_its_locks_within_the_bound(postgres, monkeypatch):
    # A stalled host had held a bandit's counting lock for as long as TCP takes to notice (two hours), and every
    # other host's outcomes for that bandit waited on it. PostgreSQL now ends such a session after the bound.
    from service.store import database

    healthy = Database(postgres.url)  # with the service's own bound: a slow moment of this busy machine must not end it too
    monkeypatch.setattr(database, "IDLE_IN_TRANSACTION_SECONDS", 1)
    stalled = Database(postgres.url)
    try:
        assert stalled.fetch("SHOW idle_in_transaction_session_timeout") == [("1s",)]
        conn = stalled.engine.connect()
        try:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242)")  # then silence, in the transaction
            with healthy.write() as session:
                session.execute(database.text("SET LOCAL lock_timeout = '20s'"))  # without the bound: a failure, not a hung suite
                taken = session.execute(database.text("SELECT pg_advisory_xact_lock(4242), 1")).all()  # waits about 1 s
            assert taken == [("", 1)]
            with pytest.raises(Exception, match="idle-in-transaction timeout|terminating connection|closed"):
                conn.exec_driver_sql("SELECT 1")
        finally:
            # The server has ended this session; whether psycopg has noticed yet depends on when its notice arrived,
            # and a ROLLBACK sent on a session it has not yet marked broken fails. Drop it without one.
            conn.invalidate()
            conn.close()
    finally:
        stalled.dispose()
        healthy.dispose()
    # Settings the operator put in DATABASE_URL win over the service's own; options for something else keep the bound.
    join = "&" if "?" in postgres.url else "?"
    own, other = Database(postgres.url + join + "options=-c%20idle_in_transaction_session_timeout%3D7s"), Database(postgres.url + join + "options=-c%20work_mem%3D5MB")
    try:
        assert own.fetch("SHOW idle_in_transaction_session_timeout") == [("7s",)]
        assert other.fetch("SHOW idle_in_transaction_session_timeout") == [("1s",)] and other.fetch("SHOW work_mem") == [("5MB",)]
    finally:
        own.dispose()
        other.dispose()
    # So do libpq's own variables, which it reads only for what the service leaves out.
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=6MB")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "3")
    from_env = Database(postgres.url)
    try:
        assert from_env.fetch("SHOW work_mem") == [("6MB",)] and from_env.fetch("SHOW idle_in_transaction_session_timeout") == [("1s",)]
        with from_env.engine.connect() as conn:
            assert conn.connection.dbapi_connection.info.get_parameters()["connect_timeout"] == "3"
    finally:
        from_env.dispose()
