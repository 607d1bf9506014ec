"""Create or upgrade the schema with Alembic, safely from several processes at once."""
from __future__ import annotations

import fcntl
import logging
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url

from service.errors import Conflict
from service.store.database import Database, unavailable_on_failure

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_PG_LOCK_ID = 0x5717C4
_LOCKFILE_SUFFIX = ".migrate.lock"
_LOCK_POLL_SECONDS = 0.2


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """An Alembic config of the shipped migrations, bound to an open connection if given."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _migration_lock(db: Database, connection: Connection) -> Iterator[None]:
    """Hold a lock that only one migrating process can have at a time."""
    if db.is_sqlite:
        path = make_url(db.url).database or "stickyloop.db"
        lock_path = Path(path + _LOCKFILE_SUFFIX)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        # Tried, not waited for inside SQL: a transaction waiting on the lock holds a snapshot, and the
        # holder's CREATE INDEX CONCURRENTLY (0013) waits for every snapshot, so the two would deadlock.
        while not connection.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": _PG_LOCK_ID}).scalar():
            connection.commit()
            time.sleep(_LOCK_POLL_SECONDS)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
            connection.commit()


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    """The migrations shipped with the code (read once: /readyz asks on every probe)."""
    return ScriptDirectory.from_config(_alembic_config())


@lru_cache(maxsize=1)
def _shipped() -> frozenset[str]:
    return frozenset(r.revision for r in _scripts().walk_revisions())


def head_revision() -> str:
    """The newest migration shipped with the code."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def schema_problem(db: Database) -> str | None:
    """Why this release cannot serve the database's schema (none yet, or an older one), or None.

    A schema newer than the code (a later release's migration) is served: each migration says in
    operations.md whether an older release may run beside it.
    """
    current, head = current_revision(db), head_revision()
    if current == head:
        return None
    run = "run `.venv/bin/flask --app wsgi init-db`"
    if current is None:
        return f"the database has no schema yet; {run}"
    return f"the schema is at revision {current} and this release needs {head}; {run}" if current in _shipped() else None


def current_revision(db: Database) -> str | None:
    """The migration the database is at, or None for an empty database."""
    # Read directly: alembic's MigrationContext narrates itself at INFO, two lines a readiness probe.
    with db.read_engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(db: Database, target: str = "head") -> tuple[str | None, str]:
    """Bring the schema to `target` (the newest revision by default); answer (before, after); Unavailable when the database is."""
    return _migrate(db, target, down=False)


def downgrade(db: Database, target: str) -> tuple[str | None, str]:
    """Take the schema back to `target`, an older revision, for an older release; answer (before, after).

    Going back drops what the later revisions added, with what it held (docs/operations.md).
    """
    if target not in _shipped():
        raise Conflict(f"no revision {target!r} in this release (its revisions run from 0001 to {head_revision()})")
    return _migrate(db, target, down=True)


@contextmanager
def _sqlite_foreign_keys_off(db: Database, conn: Connection, moving: bool) -> Iterator[None]:
    """SQLite's foreign keys off while migrating, and every reference checked after.

    SQLite changes a column by rebuilding its table, which drops the old one: with foreign keys on,
    that drop deleted every row that cascades from it (a downgrade rebuilding `experiments` emptied
    `exposures`) or failed on a row that does not (`model_artifacts` under `model_versions`).
    Nothing is checked when the schema is at its target already (the check reads every table).
    """
    if not db.is_sqlite or not moving:
        yield
        return
    raw: Any = conn.connection.driver_connection
    # Only what the migration breaks counts: a row orphaned before it (written with foreign keys off, as
    # sqlite3's shell writes by default) must not block every later init-db.
    revision = MigrationContext.configure(conn).get_current_revision()
    conn.commit()
    orphans = len(raw.execute("PRAGMA foreign_key_check").fetchall()) if revision is not None else 0
    raw.execute("PRAGMA foreign_keys=OFF")  # ignored inside a transaction: this runs between them
    try:
        yield
        if MigrationContext.configure(conn).get_current_revision() != revision:
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
            if len(broken) > orphans:
                raise Conflict(f"the migration left {len(broken) - orphans} more rows whose referenced rows are gone ({len(broken)} in all, the first in {broken[0][0]})")
        conn.commit()
    finally:
        if raw.in_transaction:
            raw.rollback()
        raw.execute("PRAGMA foreign_keys=ON")


def _check_downgrade(current: str | None, target: str) -> None:
    """Conflict, in the schema's terms rather than alembic's, for a downgrade with nothing to take back."""
    if current is None:
        raise Conflict("the database has no schema yet, so there is nothing to take back; init-db creates one")
    order = [r.revision for r in reversed(list(_scripts().walk_revisions()))]  # oldest first
    if current in order and order.index(target) > order.index(current):
        raise Conflict(f"revision {target} is ahead of the schema's, {current}: init-db moves a schema forward")


def _migrate(db: Database, target: str, down: bool) -> tuple[str | None, str]:
    with unavailable_on_failure(), db.engine.connect() as conn:
        with _migration_lock(db, conn):
            before = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
            if down:
                _check_downgrade(before, target)
            with _sqlite_foreign_keys_off(db, conn, moving=before != (head_revision() if target == "head" else target)):
                try:
                    (command.downgrade if down else command.upgrade)(_alembic_config(conn), target)
                except CommandError as exc:  # the database is ahead of this release (a rollback), or the target is unknown
                    move = "back to" if down else "to"
                    raise Conflict(f"cannot bring the schema at revision {before} {move} {target} with this release, whose newest is {head_revision()} ({exc})") from None
                conn.commit()
            after = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
    if before != after:
        log.info("schema downgraded" if down else "schema upgraded", extra={"before": before, "after": after})
    return before, after or (target if down else head_revision())
