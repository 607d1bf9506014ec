"""What a driver's failure means for a request: the database down, a schema behind this release, a server taking no writes."""
from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.exc import InterfaceError, OperationalError

from service.errors import Busy, HostCannot, Unavailable

# What the drivers raise when the server is down, the connection was lost or a lock timed out.
_DRIVER_DOWN: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, sqlite3.OperationalError)
try:
    import psycopg

    _DRIVER_DOWN += (psycopg.OperationalError, psycopg.InterfaceError)
except ImportError:  # SQLite-only installs
    pass


# PostgreSQL's read_only_sql_transaction: a write sent to a hot standby or a server made read-only.
READ_ONLY = "25006"

# What PostgreSQL says of a prepared statement whose table a migration changed (its class, 0A000, is any unsupported feature).
STALE_PLAN = "cached plan must not change result type"


def lost_or_stale(exc: Exception) -> bool:
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
