"""One place that turns every failure into the contract's JSON error shape."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the client can act on, answered with its status and the contract's shape."""

    def __init__(self, status: int, message: str, code: str | None = None, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _HTTP_CODES.get(status, "error")
        self.details = details or []


def not_found(what: str, key: str) -> ApiError:
    """The 404 for a named resource."""
    return ApiError(404, f"{what} {key!r} does not exist")


def conflict(message: str) -> ApiError:
    """The 409 for a request that does not fit the resource's state."""
    return ApiError(409, message)


def invalid(field: str, message: str, index: int | None = None) -> ApiError:
    """A 422 naming one bad field."""
    return ApiError(422, f"{field}: {message}", details=[_detail(field, message, index)])


def _detail(field: str, message: str, index: int | None) -> dict[str, Any]:
    detail: dict[str, Any] = {"field": field, "message": message}
    if index is not None:
        detail["index"] = index
    return detail


def details_from_pydantic(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """Name each bad field, with its index when it sits in a batch."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err["loc"]]
        if prefix:
            loc.insert(0, prefix)
        index = next((int(p) for p in loc if p.isdigit()), None)
        details.append(_detail(".".join(loc) or "body", err["msg"], index))
    return details


def validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    """A 422 from a pydantic validation failure."""
    details = details_from_pydantic(exc, prefix)
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(422, f"{first['field']}: {first['message']}{more}", details=details)


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> Response:
    """Serialise an error in the contract's shape."""
    body = {"error": {"code": code, "message": message, "details": details or []}}
    rid = getattr(g, "request_id", None)
    if rid:
        body["error"]["request_id"] = rid
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Install handlers so that no failure escapes in another shape."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "request body is larger than this service accepts"
        response = error_response(status, _HTTP_CODES.get(status, "error"), message)
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": getattr(g, "request_id", None)})
        return error_response(500, "internal_error", "the service failed to answer; quote the request_id when reporting it")
