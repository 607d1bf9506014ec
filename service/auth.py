"""API keys: creation, hashing, lookup and the role matrix."""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import update

from service.db import Database
from service.models import ApiKey

ROLES = ("storefront", "editor", "analyst", "admin")
KEY_PREFIX = "sl_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role."""

    key_id: int
    name: str
    role: str


def hash_key(raw: str) -> str:
    """The stored form of a key; keys carry 256 random bits, so a fast hash suffices."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def create_key(db: Database, role: str, name: str | None = None) -> tuple[ApiKey, str]:
    """Create a key for a role; answer the stored row and the raw key (shown once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name or f"{role} key", role=role, key_hash=hash_key(raw), prefix=raw[:10], created_at=time.time())
    with db.write() as session:
        session.add(row)
    return row, raw


KEY_ROW_TAG = 2


def key_row_sql(width: int = 4) -> str:
    """The key's row as (tag, name, role, id), padded with NULLs to `width` columns.

    So shaped, it can lead a UNION ALL with another read whose rows carry a
    different small-integer tag in front, then text, text and a number.
    """
    return f"SELECT {KEY_ROW_TAG}, name, role, id{', NULL' * (width - 4)} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"


KEY_ROW_SQL = key_row_sql()


def principal_from_key_row(row: tuple[Any, ...]) -> Principal:
    """The principal of a row read with KEY_ROW_SQL."""
    return Principal(key_id=int(row[3]), name=row[1], role=row[2])


def authenticate(db: Database, raw: str) -> Principal | None:
    """The principal for a raw key, or None when it is unknown or revoked."""
    rows = db.fetch(KEY_ROW_SQL, (hash_key(raw),))
    return principal_from_key_row(rows[0]) if rows else None


def revoke_key(db: Database, key_id: int) -> bool:
    """Revoke a key; answer whether one was revoked now."""
    with db.write() as session:
        result = session.execute(
            update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=time.time())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def allowed(role: str, roles: Iterable[str]) -> bool:
    """Whether a role may call an endpoint open to `roles`; admin may call everything."""
    return role == "admin" or role in roles
