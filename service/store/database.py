"""Engines, sessions and transactions for SQLite and PostgreSQL."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.errors import HostCannot
from service.store.failures import ReadOnlyNow, StalePlan, lost_or_stale, unavailable_on_failure
from service.store.thread_connections import ThreadConnections

__all__ = ["Database", "unavailable_on_failure"]


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
        self._fetch_connections = ThreadConnections(self.fetch_engine)
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
                if attempt == 2 or not lost_or_stale(exc):
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
