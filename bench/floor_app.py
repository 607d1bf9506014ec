"""The service with PostgreSQL's least work for a guarantee added to chosen requests (for `bench/floors.py`).

A request under `/floor/read/` first sends `SELECT 1`, one round trip, as the store sends its
hot statements (`service.store.prepared`, one autocommit connection per thread); one under
`/floor/write/` first writes one row exactly once, a durable commit: `INSERT ... ON CONFLICT
DO NOTHING` into a table keyed like `exposures` and nothing else. The rest of the path, after the prefix, is the
service's own request on whatever store it runs on.

    gunicorn -c service/gunicorn_conf.py bench.floor_app:app   # FLOOR_DATABASE_URL=postgresql://...
"""
from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Callable, Iterable

import psycopg

from service.store.prepared import PreparedStatements
from wsgi import app as service

FLOOR_TABLE = 'CREATE TABLE IF NOT EXISTS floor_writes (k varchar(64) COLLATE "C", u varchar(128) COLLATE "C", PRIMARY KEY (k, u))'
_READ = "SELECT 1"
_WRITE = "INSERT INTO floor_writes (k, u) VALUES (?, ?) ON CONFLICT DO NOTHING"
_local = threading.local()
_written = itertools.count()


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
    if path.startswith("/floor/read/"):
        _statements().run(_READ, ())
        environ["PATH_INFO"] = path[len("/floor/read"):]
    elif path.startswith("/floor/write/"):
        _statements().run(_WRITE, ("floor", f"{os.getpid()}-{next(_written)}"))
        environ["PATH_INFO"] = path[len("/floor/write"):]
    return service(environ, start_response)  # type: ignore[no-any-return]
