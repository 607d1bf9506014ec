"""API keys (admin)."""
from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select

from service.api import ADMIN, endpoint
from service.auth import create_key, revoke_key
from service.errors import not_found
from service.models import ApiKey
from service.schemas.common import iso
from service.schemas.system import KeyCreate, KeyCreated, KeyInfo, KeyList
from service.state import services

bp = Blueprint("keys", __name__)


def _info(row: ApiKey) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "prefix": row.prefix,
        "created_at": iso(row.created_at),
        "revoked_at": iso(row.revoked_at),
    }


@bp.get("/v1/keys")
@endpoint("List API keys (never their secrets)", roles=ADMIN, tag="keys", response=KeyList)
def list_keys() -> KeyList:
    """List every key."""
    with services().db.read() as session:
        rows = session.scalars(select(ApiKey).order_by(ApiKey.id)).all()
        return KeyList(keys=[KeyInfo.model_validate(_info(r)) for r in rows])


@bp.post("/v1/keys")
@endpoint("Create an API key; the secret is shown once", roles=ADMIN, tag="keys", body=KeyCreate, response=KeyCreated, status=201)
def create(body: KeyCreate) -> KeyCreated:
    """Create a key."""
    row, raw = create_key(services().db, body.role, body.name)
    return KeyCreated.model_validate({**_info(row), "key": raw})


@bp.delete("/v1/keys/<key_id>")
@endpoint("Revoke an API key", roles=ADMIN, tag="keys", response=KeyInfo, errors=(404,), path={"key_id": "id"})
def revoke(key_id: str) -> KeyInfo:
    """Revoke a key at once, on every worker."""
    if not key_id.isdigit():
        raise not_found("key", key_id)
    revoke_key(services().db, int(key_id))
    with services().db.read() as session:
        row = session.get(ApiKey, int(key_id))
        if row is None:
            raise not_found("key", key_id)
        return KeyInfo.model_validate(_info(row))
