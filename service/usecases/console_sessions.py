"""Console sign-ins: the cookie holds a random token, the database whose key it is.

A session lasts at most `SESSION_SECONDS` from sign-in, however active, and ends on the server at
sign-out; a revoked key ends every session of it at once. Each page reads its session (one indexed
probe): the console is not a hot path, so nothing is remembered between pages.
"""
from __future__ import annotations

import hashlib
import secrets
import time

from service.store import console_sessions as store
from service.store.database import Database
from service.usecases.keys import KeyVerifier, Principal

SESSION_SECONDS = 8 * 3600
# Sessions one key may hold at once (browsers, people sharing it); signing in beyond ends its oldest.
SESSIONS_PER_KEY = 20


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def sign_in(db: Database, keys: KeyVerifier, raw_key: str) -> tuple[str, Principal] | None:
    """A new session's token and who it signs in, or None when the key is unknown or revoked."""
    found = keys.principal(raw_key) if raw_key else None
    if found is None:
        return None
    token = secrets.token_urlsafe(32)
    now = time.time()
    store.start(db, _digest(token), found.key_id, now, now - SESSION_SECONDS, SESSIONS_PER_KEY)
    return token, found


def principal(db: Database, token: str) -> Principal | None:
    """Who a session's token signs in now: None when it is unknown, signed out, over 8 hours old or its key revoked."""
    found = store.principal(db, _digest(token), time.time() - SESSION_SECONDS)
    return Principal(*found) if found is not None else None


def sign_out(db: Database, token: str) -> None:
    """End the session on the server."""
    store.end(db, _digest(token))
