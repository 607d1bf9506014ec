"""API keys in the database: only each key's SHA-256 is stored."""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select, update

from service.store.database import Database
from service.store.tables import ApiKeyRow

_ACTIVE_BY_HASH = "SELECT id, name, role FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"


@dataclass(frozen=True)
class KeyRecord:
    """A stored key, never its secret."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: float
    revoked_at: float | None


def _record(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(row.id, row.name, row.role, row.prefix, row.created_at, row.revoked_at)


def insert(db: Database, name: str, role: str, key_hash: str, prefix: str) -> KeyRecord:
    """Store a new key."""
    row = ApiKeyRow(name=name, role=role, key_hash=key_hash, prefix=prefix, created_at=time.time())
    with db.write() as session:
        session.add(row)
        session.flush()
        return _record(row)


def active_by_hash(db: Database, key_hash: str) -> tuple[int, str, str] | None:
    """(id, name, role) of the unrevoked key with this hash, or None."""
    rows = db.fetch(_ACTIVE_BY_HASH, (key_hash,))
    return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


class LastOfItsRole(Exception):
    """The key is the last unrevoked key of the role that must keep one."""


def revoke(db: Database, key_id: int, keep_one_of: str) -> tuple[KeyRecord, bool] | None:
    """Revoke a key (once; a second revoke keeps the first time): the record and whether this call
    revoked it, or None when there is no such key. LastOfItsRole for the last unrevoked key of the
    role `keep_one_of`.
    """
    with db.write() as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            return None
        if row.revoked_at is None and row.role == keep_one_of:
            # Locking every live key of the role makes two admins revoking each other take turns: the
            # second then finds the first's key gone and its own the last. (SQLite's writers take turns.)
            live = select(ApiKeyRow.id).where(ApiKeyRow.role == keep_one_of, ApiKeyRow.revoked_at.is_(None)).with_for_update()
            if set(session.scalars(live)) <= {key_id}:
                raise LastOfItsRole()
        revoked = session.execute(
            update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None)).values(revoked_at=time.time()).returning(ApiKeyRow.id)
        ).first()
        session.refresh(row)
        return _record(row), revoked is not None


def list_all(db: Database) -> list[KeyRecord]:
    """Every key, oldest first."""
    with db.read() as session:
        return [_record(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]
