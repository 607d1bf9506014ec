"""Engines, sessions and transactions for SQLite and PostgreSQL."""
from __future__ import annotations

import os
import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import Busy, HostCannot, Unavailable

# What the drivers raise when the server is down, the connection was lost or a lock timed out.
_DRIVER_DOWN: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, sqlite3.OperationalError)
try:
    import psycopg

    from service.store.prepared import PreparedStatements

    _DRIVER_DOWN += (psycopg.OperationalError, psycopg.InterfaceError)
except ImportError:  # SQLite-only installs
    pass


# PostgreSQL's read_only_sql_transaction: a write sent to a hot standby or a server made read-only.
READ_ONLY = "25006"

# What PostgreSQL says of a prepared statement whose table a migration changed (its class, 0A000, is any unsupported feature).
STALE_PLAN = "cached plan must not change result type"


def _lost_or_stale(exc: Exception) -> bool:
    """Whether a statement failed with its connection (lost, or holding a plan a schema change outdated) rather than on its data.

    Only then is a fresh connection worth a second try; a bad value would fail again, and
    replacing the connection for it would let hostile input churn connections.
    """
    return isinstance(exc, _DRIVER_DOWN) or _stale_plan(exc)


def _stale_plan(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "0A000" and STALE_PLAN in str(exc)


@contextmanager
def unavailable_on_failure(writing: bool = False) -> Iterator[None]:
    """Turn a driver's connection failure into the domain's Unavailable, in one clear line; `writing`: a
    refusal to write (a standby, a server made read-only) is one too, where only a write could meet it."""
    try:
        yield
    except Exception as exc:
        orig = getattr(exc, "orig", None) or exc
        if _no_such_table(orig):
            # A server started before init-db, or an SQLite file moved away under it: every request
            # failed with a 500 until someone read the log.
            raise HostCannot(f"the database lacks this release's tables ({_first_line(orig)}); run `.venv/bin/flask --app wsgi init-db`") from exc
        if _no_such_column(orig):  # a schema migrated down, or restored from an older release, under a running server
            raise HostCannot(f"the database's schema is behind this release ({_first_line(orig)}); run `.venv/bin/flask --app wsgi init-db`") from exc
        if _not_a_database(orig):
            raise HostCannot(f"DATABASE_URL names a file that is not a usable SQLite database ({_first_line(orig)}); restore it from a "
                             "backup or name another file") from exc
        if isinstance(exc, _DRIVER_DOWN) and _REFUSED_BY_NAME.search(str(orig)):  # a retry would meet the same refusal
            # Said to any client, so without the server's address or the names (the server logs its database as it starts).
            raise HostCannot("the database server refuses this service: the database or role in DATABASE_URL does not exist, or the password is wrong") from exc
        if isinstance(exc, _DRIVER_DOWN):
            raise Unavailable(f"the database is unavailable ({_first_line(orig)}); try again shortly") from exc
        if writing and getattr(orig, "sqlstate", None) == READ_ONLY:  # a standby after a failover, or a server put in read-only mode
            raise ReadOnlyNow("the database accepts no writes now (a read-only server or standby); try again shortly") from exc
        if _stale_plan(orig):
            raise StalePlan("the database's schema changed under a prepared statement (a migration ran); try again shortly") from exc
        raise


class ReadOnlyNow(Unavailable):
    """A write refused by a server that takes none now: its connections go, so that the next ones find the new primary."""


class StalePlan(Busy):
    """A statement prepared before a migration changed what it returns; its retry, on a fresh connection, succeeds."""


def _first_line(exc: BaseException) -> str:
    """The driver's own text: SQLAlchemy's wrapper adds the statement and a link on further lines."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _not_a_database(exc: BaseException) -> bool:
    """SQLite's word for a file that is not one of its databases, or is one damaged: no retry mends either."""
    return type(exc) is sqlite3.DatabaseError and str(exc).startswith(("file is not a database", "database disk image is malformed"))


def _no_such_table(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "42P01" or (isinstance(exc, sqlite3.OperationalError) and str(exc).startswith("no such table"))


# What PostgreSQL answers a connection whose database or role does not exist, or whose password is wrong
# (psycopg gives these no SQLSTATE).
_REFUSED_BY_NAME = re.compile(r'FATAL:\s+(?:database "[^"]*" does not exist|role "[^"]*" does not exist|password authentication failed)')


def _no_such_column(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "42703" or (isinstance(exc, sqlite3.OperationalError) and str(exc).startswith("no such column"))


def _sqlite_engine(url: str, busy_timeout_ms: int, begin: str) -> Engine:
    """An SQLite engine in WAL mode whose transactions start with `begin`."""
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # what the configuration's own check cannot foresee (a path under /proc, a mount gone read-only)
            raise HostCannot(f"the folder of DATABASE_URL's SQLite file cannot be made ({exc.strerror}: {exc.filename})") from None
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook own transaction start; pysqlite's own
        # implicit BEGIN is deferred and would fail with SQLITE_BUSY on upgrade.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class _ThreadConnections:
    """One DBAPI connection per thread, kept open, for single-statement reads.

    Checking a connection out of the pool and back in costs more than a small
    indexed read; a gthread worker's threads live as long as the worker, so
    each keeps its own connection instead. Detached from the pool, they do not
    count against its size. A forked child opens its own.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._opened: list[Any] = []
        self._owners: dict[int, tuple[int, threading.Thread]] = {}  # id(conn): the process and thread it was opened for
        self._lock = threading.Lock()

    def get(self) -> Any:
        """This thread's connection, opened on first use; connections of threads that have ended are closed then."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            proxied = self._engine.raw_connection()
            proxied.detach()
            local.conn, local.pid, local.cursor, local.statements = proxied.dbapi_connection, os.getpid(), None, None
            with self._lock:
                # A short-lived thread (a training run under TRAINING_RUNNER=thread) left its connection open for good.
                ended = [c for c in self._opened if self._ended(c)]
                self._opened = [c for c in self._opened if c not in ended]
                for c in ended:
                    self._owners.pop(id(c), None)
                self._opened.append(local.conn)
                self._owners[id(local.conn)] = (os.getpid(), threading.current_thread())
            for c in ended:
                self._close(c)
        return local.conn

    def _ended(self, conn: Any) -> bool:
        """Whether `conn` was opened in this process for a thread that has since ended (one inherited across a fork is not this process's to close)."""
        owner = self._owners.get(id(conn))
        return owner is not None and owner[0] == os.getpid() and not owner[1].is_alive()

    def cursor(self) -> Any:
        """This thread's cursor on its connection, kept between reads (PostgreSQL: creating one costs more than a small query)."""
        conn = self.get()
        local = self._local
        if local.cursor is None:
            local.cursor = conn.cursor()
        return local.cursor

    def statements(self) -> PreparedStatements | None:
        """This thread's prepared statements on its PostgreSQL connection (None if its encoding is not UTF-8)."""
        conn = self.get()
        local = self._local
        if local.statements is None:
            local.statements = PreparedStatements.on(conn) or False
        return local.statements or None

    def discard(self) -> None:
        """Close this thread's connection (it failed); the next read opens another."""
        conn, self._local.pid = self._local.conn, None
        self._forget(conn)

    def close_all(self) -> None:
        """Close every connection this process opened."""
        with self._lock:
            opened, self._opened = self._opened, []
            self._owners.clear()
        for conn in opened:
            self._close(conn)
        self._local = threading.local()

    def _forget(self, conn: Any) -> None:
        with self._lock:
            if conn in self._opened:
                self._opened.remove(conn)
            self._owners.pop(id(conn), None)
        self._close(conn)

    @staticmethod
    def _close(conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a dead connection may refuse even to close
            pass


# How long PostgreSQL keeps a session that sits in a transaction without a statement: a host whose link
# to the database stalled mid-transaction would otherwise hold its locks (a bandit's counting lock, an
# exposure's row) for as long as TCP takes to notice, two hours by default, and stall every other host.
# No transaction of the service waits on its client for more than a fraction of a second.
IDLE_IN_TRANSACTION_SECONDS = 60


def _postgres_connect_args(url: str) -> dict[str, Any]:
    """libpq settings that bound how long a dead or stalled link can hold a connection. What the operator set wins:
    in the URL, in libpq's environment (PGCONNECT_TIMEOUT, PGOPTIONS) or in a service file, which libpq reads only
    for what the caller leaves out."""
    given = make_url(url).query
    args: dict[str, Any] = {
        # A peer gone silent is found by keepalives within about a minute, and data it never acknowledges in 30 s.
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3, "tcp_user_timeout": 30_000,
    }
    if "service" in given or os.environ.get("PGSERVICE"):
        return {name: value for name, value in args.items() if name not in given}
    if not os.environ.get("PGCONNECT_TIMEOUT"):
        args["connect_timeout"] = 10
    # Options set for something else (a search_path, say) keep the bound beside them.
    options = given.get("options", os.environ.get("PGOPTIONS", ""))
    if isinstance(options, str) and "idle_in_transaction_session_timeout" not in options:
        args["options"] = f"{options} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_SECONDS}s".strip()
    return {name: value for name, value in args.items() if name not in given or name == "options"}


class Database:
    """Owns the engines; hands out sessions in explicit read or write transactions."""

    def __init__(self, url: str, busy_timeout_ms: int = 30_000, pool_size: int = 5) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            # Writers take the lock up front (BEGIN IMMEDIATE) so that the busy
            # timeout applies; readers stay deferred so they never block writers.
            self.engine = _sqlite_engine(url, busy_timeout_ms, "BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(url, busy_timeout_ms, "BEGIN")
            self.fetch_engine = self.read_engine
        else:
            connect_args = _postgres_connect_args(url)
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size * 2, connect_args=connect_args)
            # A read of several statements (results: exposures, then totals, then spreads) must see one
            # snapshot: under READ COMMITTED each statement sees the commits made since the one before,
            # and a user exposed and converted in between counted as a conversion but not as a user.
            # A read-only REPEATABLE READ transaction takes its snapshot at its first statement and
            # never fails to serialise; the options apply per checkout, on the same pool.
            self.read_engine = self.engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            # Single-statement reads need no transaction: autocommit saves the BEGIN and
            # ROLLBACK round trips that would otherwise double the cost of a hot-path read.
            self.fetch_engine = create_engine(
                url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None, pool_size=pool_size, max_overflow=pool_size * 2, connect_args=connect_args
            )
        self._fetch_connections = _ThreadConnections(self.fetch_engine)
        self._write = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._read = sessionmaker(bind=self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite store."""
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction, committed on success and rolled back on error."""
        with self._fresh_plans(), unavailable_on_failure(writing=True), self._write() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading, all of it from one snapshot; it never holds the write lock."""
        with self._fresh_plans(), unavailable_on_failure(), self._read() as session, session.begin():
            yield session

    @contextmanager
    def _fresh_plans(self) -> Iterator[None]:
        """Drop every pooled connection when one held a plan a migration outdated, or met a server that takes no writes
        now (after a failover the next connections find the new primary).

        psycopg prepares a statement on the server after its fifth run on a connection (worth 15 % of
        outcome ingestion, measured), and a migration that changes what one returns fails it ("cached
        plan must not change result type") on each connection holding it: the pool goes at the first,
        so a worker answers that 503 about once per migration, not once per connection.
        """
        try:
            yield
        except (StalePlan, ReadOnlyNow):
            self.engine.dispose()
            raise

    def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only query on this thread's own connection; `?` marks parameters.

        The hot read paths (auth, shared state, a user's events, assignment)
        use this to skip pool and ORM session set-up, which cost more than the
        query itself. A read is safe to repeat, so a connection that died while
        idle (a database restart) is replaced and the read retried once.
        """
        with unavailable_on_failure():
            return self._fetch(sql, params)

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self.is_sqlite:
            cur = self._fetch_connections.get().cursor()
            try:
                cur.execute(sql, params)
                return cur.fetchall()
            finally:
                cur.close()  # an open statement would pin an SQLite read snapshot
        for attempt in (1, 2):
            statements = self._fetch_connections.statements()  # failing to connect is not worth a second try
            try:
                rows = statements.run(sql, params) if statements is not None else None
                if rows is not None:
                    return rows
                cur = self._fetch_connections.cursor()
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchall() if cur.description is not None else []
            except Exception as exc:
                if attempt == 2 or not _lost_or_stale(exc):
                    raise
                self._fetch_connections.discard()
        raise AssertionError("unreachable")

    def write_one(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement that writes, as its own transaction on this thread's PostgreSQL connection; `?` marks parameters.

        One round trip instead of a pooled session's checkout, BEGIN, statement and
        COMMIT. Only for statements that are atomic and safe to repeat on their own
        (INSERT ... ON CONFLICT DO NOTHING and what depends on its rows), because a
        statement whose answer was lost with the connection is retried once.
        """
        if self.is_sqlite:
            raise RuntimeError("write_one is for PostgreSQL; SQLite writes go through write()")
        try:
            with unavailable_on_failure(writing=True):
                return self._fetch(sql, params)
        except ReadOnlyNow:
            self._fetch_connections.discard()
            raise

    def insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        """Run one INSERT for many rows in one transaction; answer how many rows it wrote.

        Used for bulk ingestion, where the ORM's per-row bookkeeping would cost
        more than the insert. `?` marks parameters.
        """
        if not rows:
            return 0
        with self._fresh_plans(), unavailable_on_failure(writing=True):
            return self._insert_many(sql, rows)

    def _insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            if self.is_sqlite:
                driver = conn.driver_connection
                cur.execute("BEGIN IMMEDIATE")
                before = driver.total_changes  # type: ignore[union-attr]
                cur.executemany(sql, rows)
                written = driver.total_changes - before  # type: ignore[union-attr]
                cur.execute("COMMIT")
            else:
                cur.executemany(sql.replace("?", "%s"), rows)
                written = cur.rowcount
                conn.commit()
            cur.close()
            return int(written)
        except BaseException:
            if self.is_sqlite:
                if conn.driver_connection.in_transaction:  # type: ignore[union-attr]
                    conn.cursor().execute("ROLLBACK")
            else:
                conn.rollback()
            raise
        finally:
            conn.close()

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.read_engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection and every thread's read connection."""
        self._fetch_connections.close_all()
        for engine in {self.engine, self.read_engine, self.fetch_engine}:
            engine.dispose()
