"""One statement on a PostgreSQL connection through libpq's own prepared-statement calls.

A hot request (a user's purchases, an exposure, a key) runs one small statement.
Through psycopg's cursor the worker spent about 70 µs of CPU on it, twice what
libpq's calls and psycopg's C row loaders take on their own: the rest was the
cursor's query conversion, prepare bookkeeping and per-call loader lookup. This
keeps the driver's types and errors (rows come back through the connection's
loaders, failures as psycopg's exception classes) and drops only that layer.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer
from psycopg.errors import error_from_result

# Parameter types as psycopg itself declares them: a string or a NULL is left for
# the server to infer from its context, numbers and booleans are typed.
_BOOL, _INT2, _INT4, _INT8, _FLOAT8, _INFER = 16, 21, 23, 20, 701, 0
_INT_TYPES = ((range(-(2**15), 2**15), _INT2), (range(-(2**31), 2**31), _INT4), (range(-(2**63), 2**63), _INT8))
_NON_FINITE = {math.inf: b"Infinity", -math.inf: b"-Infinity"}
# Statements a connection keeps prepared; further distinct texts (an IN list of
# every length, say) are planned on each run instead, as psycopg would.
MAX_PREPARED = 64


class _Unsupported(Exception):
    """A parameter this path does not send."""


def _encode(value: Any) -> tuple[bytes | None, int]:
    if value is None:
        return None, _INFER
    kind = type(value)
    if kind is str:
        if "\x00" in value:  # libpq would cut a text parameter at its first NUL
            raise _Unsupported
        return value.encode(), _INFER
    if kind is bool:
        return (b"t" if value else b"f"), _BOOL
    if kind is int:
        for fits, oid in _INT_TYPES:  # the smallest that holds it; beyond int8 psycopg sends numeric
            if value in fits:
                return str(value).encode(), oid
    if kind is float:
        if math.isnan(value):
            return b"NaN", _FLOAT8
        return _NON_FINITE.get(value) or repr(value).encode(), _FLOAT8
    raise _Unsupported


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1`, `$2`, ..."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${k}{part}" for k, part in enumerate(parts[1:], 1))


class PreparedStatements:
    """The statements prepared on one connection, in autocommit mode, used by one thread."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        if conn.info.encoding != "utf-8":
            raise _Unsupported
        self._conn = conn
        self._names: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self._rows = Transformer(conn)

    @classmethod
    def on(cls, conn: psycopg.Connection[Any]) -> PreparedStatements | None:
        """The statements of `conn`, or None if it does not speak UTF-8 (parameters are sent as UTF-8 text)."""
        return cls(conn) if conn.info.encoding == "utf-8" else None

    def run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]] | None:
        """Run `sql` (`?` placeholders) with `params`; answer its rows ([] for a command).

        None, before anything is sent, when a parameter is of a type this path
        does not send (the caller then uses the cursor).
        """
        try:
            encoded = [_encode(p) for p in params]
        except _Unsupported:
            return None
        values = [v for v, _ in encoded]
        types = tuple(t for _, t in encoded)
        pgconn = self._conn.pgconn
        name = self._names.get((sql, types))
        if name is None and len(self._names) < MAX_PREPARED:
            name = f"_stickyloop_{len(self._names)}".encode()
            self._check(pgconn.prepare(name, numbered(sql).encode(), types))
            self._names[(sql, types)] = name
        if name is None:
            result = pgconn.exec_params(numbered(sql).encode(), values, types)
        else:
            result = pgconn.exec_prepared(name, values)  # type: ignore[arg-type]  # a None is sent as NULL, as psycopg itself does
        self._check(result)
        if result.status == pq.ExecStatus.COMMAND_OK:
            return []
        self._rows.set_pgresult(result)
        return self._rows.load_rows(0, result.ntuples, tuple)

    def _check(self, result: pq.abc.PGresult) -> None:
        if result.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            return
        if self._conn.pgconn.status == pq.ConnStatus.BAD:
            message = self._conn.pgconn.get_error_message(self._conn.info.encoding) or "the connection was lost"
            raise psycopg.OperationalError(message)
        raise error_from_result(result, encoding=self._conn.info.encoding)
