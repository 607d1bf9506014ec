"""Each thread's own kept-open connection, for the hot single-statement reads and writes."""
from __future__ import annotations

import os
import threading
from typing import Any

from sqlalchemy import Engine

try:
    from service.store.prepared import PreparedStatements
except ImportError:  # SQLite-only installs: no psycopg, and no prepared statements to ask for
    pass


class ThreadConnections:
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
