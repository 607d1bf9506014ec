"""The endpoint decorator: the key's check, the request's input, the answer, and the declaration OpenAPI reads.

Every view is declared with the roles it admits and the pydantic models of its
input and output; the same declaration drives validation and `/openapi.json`.
"""
from __future__ import annotations

from functools import wraps
from typing import Any, Callable

import pydantic_core
from flask import Response, current_app, g, request
from pydantic import BaseModel

from service.http import request_input as checked
from service.http.errors import ApiError
from service.http.spec import EndpointSpec
from service.usecases.context import Services
from service.usecases.keys import ADMIN_ROLE, Principal, Role, a_key_of, allowed, roles_needed


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["stickyloop"]  # type: ignore[no-any-return]


STOREFRONT: tuple[Role, ...] = ("storefront",)
EDITOR: tuple[Role, ...] = ("editor",)
ANALYST: tuple[Role, ...] = ("analyst",)
ADMIN: tuple[Role, ...] = (ADMIN_ROLE,)
READ_EXPERIMENTS: tuple[Role, ...] = ("editor", "analyst")


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "send an API key as 'Authorization: Bearer <key>'")
    return token.strip()


def _admit(principal: Principal | None, roles: tuple[str, ...]) -> Principal:
    """The principal if it may call an endpoint open to `roles`; 401 or 403 otherwise."""
    if principal is None:
        raise ApiError(401, "the API key is unknown or revoked")
    if not allowed(principal.role, roles):
        raise ApiError(403, f"{a_key_of(principal.role)} cannot call this endpoint; it needs {roles_needed(roles)}")
    g.principal = principal
    return principal


def _principal(roles: tuple[str, ...]) -> Principal:
    """Authenticate the bearer key and check its role."""
    return _admit(services().keys.principal(_bearer_token()), roles)


def _serialise(spec: EndpointSpec, result: Any) -> Response:
    """Turn a view's result into a JSON response."""
    if isinstance(result, Response):
        return result
    body: str | bytes
    if isinstance(result, BaseModel):
        body = result.model_dump_json()
    elif isinstance(result, dict) and spec.response is not None:
        # Hot endpoints answer plain dicts: building a model object per item cost
        # more than the ranking did. Under test, each such answer must be exactly
        # what its declared model would have written.
        body = pydantic_core.to_json(result)
        if current_app.testing:
            _check_answer(spec.response, result, body)
    else:
        body = current_app.json.dumps(result)
    # A line of its own, as the error answers have (Flask's jsonify): curl's output then ends before the prompt.
    return Response(body + b"\n" if isinstance(body, bytes) else body + "\n", status=spec.status, mimetype="application/json")


def no_content() -> Response:
    """A 204: no body, so no Content-Type either (werkzeug would call the nothing text/html)."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def _check_answer(model: type[BaseModel], result: dict[str, Any], body: bytes) -> None:
    expected = model.model_validate(result).model_dump_json().encode()
    if body != expected:
        raise AssertionError(f"the answer differs from {model.__name__}: {body!r} != {expected!r}")


def endpoint(summary: str, **declared: Any) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Declare an endpoint (the options are `EndpointSpec`'s fields); the view receives `body`, `query` and path
    args already validated, after the key's check.

    `records` marks a GET that can record something (an exposure): the app takes HEAD off its
    route (`service.http.app`), so that a link checker enrols nobody.
    """
    spec = EndpointSpec(summary=summary, **declared)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Response]:
        @wraps(fn)
        def view(**args: Any) -> Response:
            if spec.roles is not None:
                _principal(spec.roles)  # a bad key answers 401 or 403 before any other error
            checked.check_utf8()
            checked.check_path(spec, args)
            if spec.body is not None:
                args["body"] = checked.parse_body(spec)
            elif request.method in ("POST", "PUT", "PATCH", "DELETE") and spec.roles is not None:
                checked.refuse_body()
            if spec.query is None and request.args and spec.roles is not None:  # probes may add a cache-buster to /healthz and /readyz
                checked.refuse_query(spec)
            if spec.query is not None or spec.query_attributes:
                query, attributes = checked.query_and_attributes(spec)
                if spec.query is not None:
                    args["query"] = query
                if spec.query_attributes:
                    args["attributes"] = attributes
            return _serialise(spec, fn(**args))

        view.__api__ = spec  # type: ignore[attr-defined]
        return view

    return decorate
