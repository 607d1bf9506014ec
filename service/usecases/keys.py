"""API keys: creation, revocation, and who a raw key belongs to, with the role matrix.

Checking a key is an ordinary read. So that a hot endpoint does not pay a round
trip for it on every request, each worker remembers a verified key for at most
`KEY_CACHE_SECONDS`: a revoked key fails on every worker and host within that
bound. Unknown keys are never remembered, so a new key works at once.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Literal, get_args

from service.errors import Conflict, Invalid, NotFound
from service.store import keys as store
from service.store import state
from service.store.database import Database
from service.store.keys import KeyRecord
from service.text import encodable

log = logging.getLogger(__name__)

Role = Literal["storefront", "editor", "analyst", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ADMIN_ROLE: Role = "admin"  # may call every endpoint
KEY_PREFIX = "sl_"
KEY_CACHE_SECONDS = 1.0
# The largest key id a client can name: ids are 64-bit in the database.
MAX_KEY_ID = 2**63 - 1


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role."""

    key_id: int
    name: str
    role: str


def hash_key(raw: str) -> str:
    """The stored form of a key; keys carry 256 random bits, so a fast hash suffices."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def allowed(role: str, roles: Iterable[str]) -> bool:
    """Whether a role may call an endpoint open to `roles`; admin may call everything."""
    return role == ADMIN_ROLE or role in roles


def a_key_of(role: str) -> str:
    """'a storefront key', 'an editor key'."""
    return f"{'an' if role[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {role} key"


def roles_needed(roles: Iterable[str]) -> str:
    """The roles that may call an endpoint open to `roles`, as a 403 names them."""
    others = [r for r in roles if r != ADMIN_ROLE]
    if not others:
        return "an admin key"
    named = others[0] if len(others) == 1 else f"{', '.join(others[:-1])} or {others[-1]}"
    return f"{a_key_of(named)} (or an admin key)"  # 'an editor key (or an admin key)', 'a storefront or analyst key (...)'



class KeyVerifier:
    """Who a raw key belongs to; verified keys are remembered for at most `ttl` seconds."""

    def __init__(self, db: Database, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._db = db
        self._ttl = ttl
        self._known: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def principal(self, raw: str) -> Principal | None:
        """The key's principal, or None when it is unknown or revoked."""
        digest = hash_key(raw)
        now = time.monotonic()
        hit = self._known.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = store.active_by_hash(self._db, digest)
        if found is None:
            self._known.pop(digest, None)
            return None
        principal = Principal(*found)
        with self._lock:
            if len(self._known) > 10_000:  # keys are few; this only bounds a flood of distinct ones
                self._known.clear()
            self._known[digest] = (now + self._ttl, principal)
        return principal

    def forget(self, key_id: int) -> None:
        """Drop a key from this worker's memory at once (the worker that revoked it need not wait)."""
        with self._lock:
            self._known = {d: hit for d, hit in self._known.items() if hit[1].key_id != key_id}


KEY_NAME_MAX = 128  # characters, as api_keys.name holds


def create_key(db: Database, role: str, name: str | None = None, by_key_id: int | None = None) -> tuple[KeyRecord, str]:
    """Create a key for a role; answer the stored record and the raw key (shown once).

    `by_key_id`: the admin key that asked (None from the command line), for the log.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if name is not None and not (1 <= len(name) <= KEY_NAME_MAX and "\x00" not in name and encodable(name)):  # the command line's check; the API's schema has its own
        raise Invalid.field("name", f"must be 1 to {KEY_NAME_MAX} characters of UTF-8 without NUL, got {len(name)}")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    record = store.insert(db, name or f"{role} key", role, hash_key(raw), raw[:10])
    log.info("key created", extra={"key_id": record.id, "role": role, "key_name": record.name, "by_key_id": by_key_id})  # never the key itself
    return record, raw


def revoke_key(db: Database, verifier: KeyVerifier, key_id: str, by_key_id: int | None = None) -> KeyRecord:
    """Revoke a key by its id as a client wrote it; NotFound when no key has that id, Conflict when
    it is the last admin key (nobody could manage keys after it but the command line).

    Other workers and hosts stop accepting it within KEY_CACHE_SECONDS.
    """
    # isdigit() alone admits '²' and other scripts' digits, which int() reads or refuses; a leading zero
    # ("01") spells no id that creating or listing answered.
    if not (key_id.isascii() and key_id.isdigit()) or key_id != str(int(key_id)) or int(key_id) > MAX_KEY_ID:
        raise NotFound("key", key_id)
    try:
        revoked = store.revoke(db, int(key_id), keep_one_of=ADMIN_ROLE)
    except store.LastOfItsRole:
        raise Conflict(f"key {key_id} is the last admin key: create another admin key before revoking this one") from None
    if revoked is None:
        raise NotFound("key", key_id)
    record, newly = revoked
    verifier.forget(record.id)
    if newly:
        log.info("key revoked", extra={"key_id": record.id, "role": record.role, "key_name": record.name, "by_key_id": by_key_id})
    return record


_DEMO_KEYS = "demo_keys"  # the shared setting that holds the ids of the keys `renew_demo_keys` made last


def renew_demo_keys(db: Database, verifier: KeyVerifier) -> tuple[dict[str, str], int]:
    """One new key per role named "demo <role>", and the demo keys made before revoked: the new raw
    keys by role, and how many old ones were revoked.

    Only keys this made are revoked, by the ids it recorded: an admin may name a key of their own
    "demo storefront". (Before the ids were recorded, the keys it made are known by name alone.)
    """
    recorded = state.setting(db, _DEMO_KEYS)
    live = [k for k in store.list_all(db) if k.revoked_at is None]
    if recorded is None:
        earlier = [k.id for k in live if k.name == f"demo {k.role}"]
    else:
        made_before = {int(i) for i in recorded.split(",") if i}
        earlier = [k.id for k in live if k.id in made_before]
    made: dict[str, tuple[KeyRecord, str]] = {}
    for role in ROLES:
        made[role] = create_key(db, role, f"demo {role}")
        # Recorded as each is made, beside the ones still to revoke: a run stopped halfway leaves no live
        # demo key that the next run does not know of.
        state.put_setting(db, _DEMO_KEYS, ",".join(str(i) for i in [*earlier, *(record.id for record, _ in made.values())]))
    for key_id in earlier:
        revoke_key(db, verifier, str(key_id))
    state.put_setting(db, _DEMO_KEYS, ",".join(str(record.id) for record, _ in made.values()))
    return {role: raw for role, (_, raw) in made.items()}, len(earlier)


def list_keys(db: Database) -> list[KeyRecord]:
    """Every key, oldest first, without secrets."""
    return store.list_all(db)
