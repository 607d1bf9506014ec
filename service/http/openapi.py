"""Builds the OpenAPI 3.1 document from the endpoints' own declarations."""
from __future__ import annotations

from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode as JsonMode
from pydantic.json_schema import models_json_schema

from service.http.errors import HTTP_ERRORS
from service.http.spec import CONVERTER, PATH_KINDS, TAGS, EndpointSpec
from service.http.schemas.common import ErrorBody
from service.usecases.keys import ADMIN_ROLE

_REF = "#/components/schemas/{model}"
_ERROR_TEXT = {status: text for status, (_, text) in HTTP_ERRORS.items() if text is not None}
# Any request may meet these: gunicorn refuses an over-long request line or header before the app
# (414, 431), and the app a URL whose %-escapes are not UTF-8 (400).
_ANY_REQUEST = (400, 414, 431)


def _models(app: Flask) -> list[tuple[type[BaseModel], JsonMode]]:
    """Every model that appears in a declaration, in a stable order."""
    seen: dict[tuple[str, str], tuple[type[BaseModel], JsonMode]] = {}
    for spec in _specs(app).values():
        pairs: tuple[tuple[type[BaseModel] | None, JsonMode], ...] = ((spec.body, "validation"), (spec.query, "validation"), (spec.response, "serialization"))
        for model, mode in pairs:
            if model is not None:
                seen[(model.__name__, mode)] = (model, mode)
    seen[("ErrorBody", "serialization")] = (ErrorBody, "serialization")
    return list(seen.values())


def _specs(app: Flask) -> dict[str, EndpointSpec]:
    return {name: fn.__api__ for name, fn in app.view_functions.items() if hasattr(fn, "__api__")}


def _parameters(spec: EndpointSpec, path_names: list[str], schemas: dict[Any, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in path_names:
        pattern = PATH_KINDS[spec.path.get(name, "id")].pattern
        schema: dict[str, Any] = {"type": "string", "pattern": pattern}
        if spec.path.get(name, "id") == "id":
            schema = {"type": "string", "pattern": pattern}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if spec.query is not None:
        query_schema = spec.query.model_json_schema(ref_template=_REF)
        required = set(query_schema.get("required", []))
        for name, prop in query_schema.get("properties", {}).items():
            prop = {k: v for k, v in prop.items() if k != "title"}
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def _responses(spec: EndpointSpec, schemas: dict[Any, Any], method: str) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": spec.summary}
    if spec.response is not None:
        ok["content"] = {spec.media_type: {"schema": schemas[(spec.response, "serialization")]}}
    elif spec.media_type != "application/json":
        ok["content"] = {spec.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(spec.status): ok}
    codes = set(spec.errors) | set(_ANY_REQUEST)
    if spec.roles is not None:
        codes |= {401, 403, 422, 503}  # the key is checked against the database; an unknown query parameter is refused
    if spec.body is not None:
        codes |= {400, 413, 415, 422}
    elif method in ("POST", "PUT", "PATCH", "DELETE") and spec.roles is not None:
        codes |= {400, 413, 415, 422}  # an action without a body reads one to refuse it (`request_input.refuse_body`)
    if spec.query is not None or spec.path:
        codes.add(422)
    error = {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}
    for code in sorted(codes):
        responses[str(code)] = {"description": spec.error_text.get(code) or _ERROR_TEXT.get(code, "Error"), "content": error}
    return responses


def _closed(schema: Any) -> None:
    """A map whose names pydantic constrains is described by `patternProperties`, which alone lets any other
    name through; the server refuses such a name, so the schema says so (`additionalProperties: false`)."""
    if isinstance(schema, list):
        for item in schema:
            _closed(item)
    elif isinstance(schema, dict):
        if "patternProperties" in schema:
            schema.setdefault("additionalProperties", False)
        for key, value in schema.items():
            if key in ("properties", "patternProperties", "$defs"):  # names mapped to schemas: each a schema, not the names
                for inner in value.values():
                    _closed(inner)
            elif key not in ("default", "examples", "enum", "const"):  # values, not schemas
                _closed(value)


def build_openapi(app: Flask) -> dict[str, Any]:
    """The OpenAPI document for every declared endpoint of `app`."""
    schemas, defs = models_json_schema(_models(app), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    specs = _specs(app)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        spec = specs.get(rule.endpoint)
        if spec is None:
            continue
        path = CONVERTER.sub(r"{\1}", rule.rule)
        path_names = CONVERTER.findall(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {
                "operationId": rule.endpoint.replace(".", "_"),
                "summary": spec.summary,
                "tags": [spec.tag],
                "parameters": _parameters(spec, path_names, schemas),
                "responses": _responses(spec, schemas, method),
            }
            if spec.roles is None:
                op["security"] = []
            else:
                op["description"] = "Roles: " + ", ".join(sorted(set(spec.roles) | {ADMIN_ROLE}))
            if spec.body is not None:
                op["requestBody"] = {
                    "required": not spec.body_optional,
                    "content": {"application/json": {"schema": schemas[(spec.body, "validation")]}},
                }
            paths.setdefault(path, {})[method.lower()] = op
    _closed(list(defs.get("$defs", {}).values()))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stickyloop",
            "version": "1",
            "description": "Recommendations and experiments over loyalty reward schedules. See README.md.",
        },
        "servers": [{"url": "/"}],
        # Names alone: Swagger UI would show a description beside each name ("keys API keys").
        "tags": [{"name": name} for name in TAGS],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
