"""The service with a bare PostgreSQL statement added to chosen requests (for `bench/floors.py`).

A request under `/floor/read/` first sends `SELECT 1`, one round trip, as the store sends its
hot statements (`service.store.prepared`, one autocommit connection per thread), and reads a
returning user's purchases and the shared state from a per-process memo instead of the store, so
that it pays the bare round trip in place of the store's read, not on top of it. One under
`/floor/write/` first writes one row exactly once, a durable commit: `INSERT ... ON CONFLICT DO
NOTHING` into a table keyed like `exposures` and nothing else (`bench/floors.py` makes it). The
rest of the path, after the prefix, is the service's own request on whatever store it runs on.

    gunicorn -c service/gunicorn_conf.py bench.floor_app:app   # FLOOR_DATABASE_URL=postgresql://...
"""
from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Callable, Iterable

import psycopg

from service.store.database import Database
from service.store.prepared import PreparedStatements
from service.usecases import recommendations
from wsgi import app as service

_READ = "SELECT 1"
_WRITE = "INSERT INTO floor_writes (k, u) VALUES (?, ?) ON CONFLICT DO NOTHING"
_local = threading.local()
_written = itertools.count()
_store_read = recommendations.state_and_user_events
_read_before: dict[tuple[str, bool], Any] = {}


def _remembered_read(db: Database, user_id: str, purchases_only: bool = False) -> Any:
    """The store's read for a plain request; for a floor request, what it answered this user before."""
    if not getattr(_local, "floor", False):
        return _store_read(db, user_id, purchases_only)
    key = (user_id, purchases_only)
    if key not in _read_before:
        _read_before[key] = _store_read(db, user_id, purchases_only)
    return _read_before[key]


recommendations.state_and_user_events = _remembered_read  # type: ignore[assignment]


def _statements() -> PreparedStatements:
    if getattr(_local, "pid", None) != os.getpid():
        conn = psycopg.connect(os.environ["FLOOR_DATABASE_URL"], autocommit=True)
        statements = PreparedStatements.on(conn)
        assert statements is not None, "the floor's database must speak UTF-8"
        _local.statements, _local.pid = statements, os.getpid()
    return _local.statements  # type: ignore[no-any-return]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The service's answer to the path after a `/floor/read` or `/floor/write` prefix, that work done first."""
    path: str = environ["PATH_INFO"]
    _local.floor = False
    if path.startswith("/floor/read/"):
        _statements().run(_READ, ())
        environ["PATH_INFO"] = path[len("/floor/read"):]
        _local.floor = True
    elif path.startswith("/floor/write/"):
        _statements().run(_WRITE, ("floor", f"{os.getpid()}-{next(_written)}"))
        environ["PATH_INFO"] = path[len("/floor/write"):]
    return service(environ, start_response)  # type: ignore[no-any-return]
