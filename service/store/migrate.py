"""Create or upgrade the schema with Alembic, safely from several processes at once."""
from __future__ import annotations

import fcntl
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from service.store.database import Database, unavailable_on_failure

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_PG_LOCK_ID = 0x5717C4
_LOCKFILE_SUFFIX = ".migrate.lock"


def _alembic_config(connection: Connection) -> AlembicConfig:
    """An Alembic config bound to an open connection."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
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
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
            connection.commit()


def head_revision() -> str:
    """The newest migration shipped with the code."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    """The migration the database is at, or None for an empty database."""
    with db.read_engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, target: str = "head") -> tuple[str | None, str]:
    """Bring the schema to `target` (the newest revision by default); answer (before, after); Unavailable when the database is."""
    with unavailable_on_failure(), db.engine.connect() as conn:
        with _migration_lock(db, conn):
            before = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
            command.upgrade(_alembic_config(conn), target)
            conn.commit()
            after = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
    log.info("schema upgraded", extra={"before": before, "after": after})
    return before, after or head_revision()
