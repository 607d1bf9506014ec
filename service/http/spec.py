"""What an endpoint declares: who may call it, what it takes and answers, and its path parameters' formats.

One declaration drives the request's checks (`service.http.request_input`), the view's answer
(`service.http.endpoint`) and `/openapi.json` (`service.http.openapi`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import BaseModel

from experiments.definitions import KEY_PATTERN
from service.http.schemas.common import ID_PATTERN, Query

ID = re.compile(ID_PATTERN)
PATH_KINDS = {"id": ID, "key": KEY_PATTERN}
CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-zA-Z_]+)>")
# The sections endpoints are documented in, in the order a new reader meets them, with their titles:
# /openapi.json lists them in this order and docs/http-reference.md takes its headings from them.
TAGS = {
    "system": "System",
    "keys": "API keys",
    "catalogue": "Catalogue and events",
    "recommendations": "Recommendations",
    "models": "Model versions",
    "experiments": "Experiments",
    "assignment": "Assignment",
    "outcomes": "Outcomes",
    "rewards": "Rewards",
    "results": "Results",
    "users": "Users",
}


@lru_cache(maxsize=None)
def plain_rule(rule: str) -> str:
    """A route as clients, logs and dashboards name it, without converters: `/v1/items/<item_id>`."""
    return CONVERTER.sub(r"<\1>", rule)


@dataclass(frozen=True)
class EndpointSpec:
    """What an endpoint accepts and answers, for validation and documentation."""

    summary: str
    roles: tuple[str, ...] | None
    tag: str
    body: type[BaseModel] | None = None
    body_optional: bool = False
    query: type[Query] | None = None
    response: type[BaseModel] | None = None
    media_type: str = "application/json"
    status: int = 200
    errors: tuple[int, ...] = ()
    # What an error means here, where the general text (openapi._ERROR_TEXT) would not say.
    error_text: dict[int, str] = field(default_factory=dict)
    path: dict[str, str] = field(default_factory=dict)
    batch_field: str | None = None
    query_attributes: bool = False
    records: bool = False

    def __post_init__(self) -> None:
        if self.tag not in TAGS:
            raise ValueError(f"tag {self.tag!r} is none of {', '.join(TAGS)}: add it to TAGS, which orders and titles the reference")
        # Declarations pass any iterable of roles and errors; the spec keeps tuples, hashable and fixed.
        if self.roles is not None:
            object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "errors", tuple(self.errors))
