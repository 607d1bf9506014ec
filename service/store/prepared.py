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
import re
from collections import OrderedDict
from functools import lru_cache
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
# A statement text is prepared on its second run, so that a one-off (an IN list of some
# length) costs one round trip and no slot; a connection keeps the 64 most recently used.
PREPARE_AFTER = 2
MAX_PREPARED = 64
_RUNS_KEPT = 1024
# A quoted literal is matched whole so that a '?' inside it stays text.
_PLACEHOLDER_OR_LITERAL = re.compile(r"'(?:[^']|'')*'|\?")


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


@lru_cache(maxsize=512)
def numbered(sql: str) -> tuple[bytes, int]:
    """The statement with `?` placeholders as PostgreSQL's `$1`, `$2`, ..., and how many there are."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group() != "?":
            return match.group()
        count += 1
        return f"${count}"

    return _PLACEHOLDER_OR_LITERAL.sub(number, sql).encode(), count


class PreparedStatements:
    """The statements prepared on one connection, in autocommit mode, used by one thread."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._prepared: OrderedDict[tuple[str, tuple[int, ...]], bytes] = OrderedDict()
        self._runs: dict[tuple[str, tuple[int, ...]], int] = {}
        self._named = 0
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
        text, placeholders = numbered(sql)
        if placeholders != len(params):  # as the cursor does: before sending, as a programming error
            raise psycopg.ProgrammingError(f"the statement has {placeholders} placeholders but {len(params)} parameters were passed")
        name = self._name_for((sql, types), text)
        pgconn = self._conn.pgconn
        if name is None:
            result = pgconn.exec_params(text, values, types)  # type: ignore[arg-type]  # a None is sent as NULL, as psycopg itself does
        else:
            result = pgconn.exec_prepared(name, values)  # type: ignore[arg-type]
        self._check(result)
        if result.status == pq.ExecStatus.COMMAND_OK:
            return []
        self._rows.set_pgresult(result)
        return self._rows.load_rows(0, result.ntuples, tuple)

    def _name_for(self, key: tuple[str, tuple[int, ...]], text: bytes) -> bytes | None:
        """The name `key` is prepared under, preparing it on its second run; None while it is still a one-off."""
        name = self._prepared.get(key)
        if name is not None:
            self._prepared.move_to_end(key)
            return name
        runs = self._runs.pop(key, 0) + 1
        if runs < PREPARE_AFTER:
            if len(self._runs) >= _RUNS_KEPT:
                self._runs.clear()
            self._runs[key] = runs
            return None
        pgconn = self._conn.pgconn
        if len(self._prepared) >= MAX_PREPARED:
            _, oldest = self._prepared.popitem(last=False)
            self._check(pgconn.exec_(b"DEALLOCATE " + oldest))
        name = f"_stickyloop_{self._named}".encode()
        self._named += 1
        self._check(pgconn.prepare(name, text, key[1]))
        self._prepared[key] = name
        return name

    def _check(self, result: pq.abc.PGresult) -> None:
        if result.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            return
        if self._conn.pgconn.status == pq.ConnStatus.BAD:
            message = self._conn.pgconn.get_error_message(self._conn.info.encoding) or "the connection was lost"
            raise psycopg.OperationalError(message)
        raise error_from_result(result, encoding=self._conn.info.encoding)
