"""API keys (admin)."""
from __future__ import annotations

from flask import Blueprint, g

from service.http.endpoint import ADMIN, endpoint, services
from service.http.schemas.system import KeyCreate, KeyCreated, KeyInfo, KeyList
from service.timestamps import iso
from service.usecases import keys
from service.usecases.keys import KeyRecord

bp = Blueprint("keys", __name__)


def _info(record: KeyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "prefix": record.prefix,
        "created_at": iso(record.created_at),
        "revoked_at": iso(record.revoked_at),
    }


@bp.get("/v1/keys")
@endpoint("List API keys (never their secrets)", roles=ADMIN, tag="keys", response=KeyList)
def list_keys() -> KeyList:
    """List every key."""
    return KeyList(keys=[KeyInfo.model_validate(_info(r)) for r in keys.list_keys(services().db)])


@bp.post("/v1/keys")
@endpoint("Create an API key; the secret is shown once", roles=ADMIN, tag="keys", body=KeyCreate, response=KeyCreated, status=201)
def create(body: KeyCreate) -> KeyCreated:
    """Create a key."""
    record, raw = keys.create_key(services().db, body.role, body.name, by_key_id=g.principal.key_id)
    return KeyCreated.model_validate({**_info(record), "key": raw})


@bp.delete("/v1/keys/<key_id>")
@endpoint("Revoke an API key; it fails on every worker and host within 1 second", roles=ADMIN, tag="keys", response=KeyInfo, errors=(404, 409), path={"key_id": "id"})
def revoke(key_id: str) -> KeyInfo:
    """Revoke the key whose `id` (a whole number) creating or listing it answered; anything else is a 404.
    A key revoked before is answered as it is, with its first `revoked_at`. The last unrevoked admin key
    cannot be revoked (409): create another first, so that some key can still manage keys."""
    return KeyInfo.model_validate(_info(keys.revoke_key(services().db, services().keys, key_id, by_key_id=g.principal.key_id)))
