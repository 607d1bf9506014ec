"""Health, readiness and API keys."""
from __future__ import annotations

from pydantic import Field

from service.http.schemas.common import Input, Output, Text
from service.usecases.keys import KEY_NAME_MAX, Role


class Health(Output):
    """Liveness or readiness."""

    status: str


class KeyCreate(Input):
    """A new key's role and a name to recognise it by."""

    role: Role
    name: Text | None = Field(default=None, min_length=1, max_length=KEY_NAME_MAX, description="a label for the key; without one it is named after its role (\"analyst key\")")


class KeyInfo(Output):
    """A key as listed: never its secret."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: str
    revoked_at: str | None = None


class KeyCreated(KeyInfo):
    """A freshly created key: the only time the secret is shown."""

    key: str


class KeyList(Output):
    """All keys."""

    keys: list[KeyInfo]
