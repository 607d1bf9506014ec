"""Console sign-ins held on the server: each row is a cookie's token (as its SHA-256) and whose key it is."""
from __future__ import annotations

from sqlalchemy import delete, select

from service.store.database import Database
from service.store.tables import ConsoleSessionRow

# The key must be unrevoked and the session not too old: one indexed probe.
_PRINCIPAL = (
    "SELECT k.id, k.name, k.role FROM console_sessions s JOIN api_keys k ON k.id = s.key_id "
    "WHERE s.token_hash = ? AND s.created_at > ? AND k.revoked_at IS NULL"
)


def start(db: Database, token_hash: str, key_id: int, now: float, forget_before: float, per_key: int) -> None:
    """Record a sign-in; forget sessions begun before `forget_before` (none can sign anyone in again), and
    the key's oldest beyond its newest `per_key`, so that signing in again and again cannot grow the table."""
    with db.write() as session:
        session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.created_at <= forget_before))
        session.add(ConsoleSessionRow(token_hash=token_hash, key_id=key_id, created_at=now))
        session.flush()
        newest = select(ConsoleSessionRow.token_hash).where(ConsoleSessionRow.key_id == key_id).order_by(ConsoleSessionRow.created_at.desc()).limit(per_key)
        session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.key_id == key_id, ConsoleSessionRow.token_hash.not_in(newest.scalar_subquery())))


def principal(db: Database, token_hash: str, started_after: float) -> tuple[int, str, str] | None:
    """(key id, name, role) of a live session begun after `started_after`, or None."""
    rows = db.fetch(_PRINCIPAL, (token_hash, started_after))
    return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


def end(db: Database, token_hash: str) -> None:
    """Sign a session out: its token no longer signs anyone in, wherever it was copied to."""
    with db.write() as session:
        session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.token_hash == token_hash))
