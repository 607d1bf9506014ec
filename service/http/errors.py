"""One place that turns every failure into the contract's JSON error shape and status code."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Iterable

from flask import Flask, Response, g, jsonify, request
from gunicorn.http.errors import ParseException
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from experiments.schedules import SCHEDULES
from service.errors import Busy, Conflict, HostCannot, Invalid, NotFound, ServiceError, Unavailable, detail

log = logging.getLogger(__name__)

# Each status the service answers an error with: its `error.code`, and what the OpenAPI document
# says it means (None: no endpoint declares it, though any request may meet it).
HTTP_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("bad_request", "Malformed request: a body that is not valid JSON or gives a name twice in one object (an action that takes none refuses one), or %-escapes in the URL that are not UTF-8"),
    401: ("unauthorized", "No or unknown API key"),
    403: ("forbidden", "The key's role may not call this"),
    404: ("not_found", "Unknown resource"),
    405: ("method_not_allowed", None),
    409: ("conflict", "Wrong state for this change"),
    413: ("payload_too_large", "Batch or body too large"),
    414: ("uri_too_long", "Request line over 8,190 bytes; refused by the HTTP server before the app, in the same error shape"),
    415: ("unsupported_media_type", "The body came with a Content-Encoding (gzip, br, ...): send the JSON itself"),
    417: ("expectation_failed", None),
    422: ("validation_error", "Failed validation; details name each bad field"),
    431: ("headers_too_large", "A header over 8,190 bytes or over 100 headers; refused by the HTTP server before the app, in the same error shape"),
    500: ("internal_error", None),
    501: ("not_implemented", None),
    503: ("unavailable", "The database is unreachable (try again shortly), or the server needs its operator (the message says what)"),
}
_HTTP_CODES = {status: code for status, (code, _) in HTTP_ERRORS.items()}
# The domain's errors and the status each answers with; the first match wins.
_STATUS: tuple[tuple[type[ServiceError], int], ...] = ((NotFound, 404), (Conflict, 409), (Invalid, 422), (Unavailable, 503))


class ApiError(Exception):
    """An error only HTTP knows of (a bad key, malformed JSON, a batch too large)."""

    def __init__(self, status: int, message: str, code: str | None = None, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _HTTP_CODES.get(status, "error")
        self.details = details or []


def status_of(exc: ServiceError) -> int:
    """The status code a domain error answers with."""
    return next(status for kind, status in _STATUS if isinstance(exc, kind))


# A union names the member that failed ("dict[constrained-str,constrained-float]", "bool"): not a
# field. Keys a client chose ("tags[0]") and schedule tags ("fixed_ratio") are kept.
_UNION_MEMBER = re.compile(r"^(?:(?:dict|list|tuple|set|literal|function-[a-z]+|tagged-union|union|nullable|json-or-python|lax-or-strict|is-instance)\[.*\]|constrained-[a-z]+|str|int|float|bool|none)$")


# A tagged union puts its tag in an error's location (`schedule.fixed_ratio.every`), where the
# request has none: the client sent `schedule: {"type": "fixed_ratio", "every": 0}`.
_UNION_TAGS = {"schedule": frozenset(SCHEDULES)}


def _request_path(loc: tuple[int | str, ...]) -> list[str]:
    """An error's location as a path in the request: without pydantic's union members and tags."""
    path: list[str] = []
    for part in loc:
        if isinstance(part, str) and (_UNION_MEMBER.match(part) or (path and part in _UNION_TAGS.get(path[-1], ()))):
            continue
        path.append(str(part))
    return path


UNAVAILABLE = "the database is unavailable; try again shortly"


def details_from_pydantic(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """Name each bad field, with its index when it sits in a batch."""
    details = []
    for err in exc.errors(include_url=False):
        loc = _request_path(err["loc"])
        if prefix:
            loc.insert(0, prefix)
        # A list's position (an int in pydantic's location), not a key a client chose: "7" and "¹" name fields.
        index = next((p for p in err["loc"] if isinstance(p, int)), None)
        message = _plain_message(err)
        name = _failed_name(err)
        if name is not None:  # the map is the field: a name that failed may be empty, or too long to be a path
            del loc[-2:]
            message = f"a name, {_shown(name)}: {message}"
        details.append(detail(".".join(loc) or "body", message, index))
    return details


def _failed_name(err: Any) -> str | None:
    """The name in a map that failed its own check, or None when a value failed.

    pydantic marks a name's failure by appending "[key]" to the path that ends in the name itself; a
    value held under the name "[key]" ends its path the same way, but the value is not its own name.
    """
    loc = err["loc"]
    if len(loc) >= 2 and loc[-1] == "[key]" and isinstance(loc[-2], str) and err.get("input") == loc[-2]:
        return loc[-2]
    return None


def _shown(name: str, most: int = 40) -> str:
    """A name as a message quotes it: in full when short, else its start."""
    return repr(name) if len(name) <= most else repr(name[:most]) + "..."


def _plain_message(err: Any) -> str:
    """pydantic's message in plain words where its own reads like the library talking; our validators'
    sentences without its "Value error, " in front."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field here"
    if kind == "too_short" and "min_length" in ctx:
        return f"needs at least {ctx['min_length']} {'entries' if ctx['min_length'] != 1 else 'entry'}, got {ctx.get('actual_length', 'fewer')}"
    if kind == "too_long" and "max_length" in ctx and ctx.get("field_type") == "List":
        return f"takes at most {ctx['max_length']} entries, got {ctx.get('actual_length', 'more')}"
    return str(err["msg"]).removeprefix("Value error, ")


def validation_error(exc: ValidationError, prefix: str = "") -> Invalid:
    """A 422 from a pydantic validation failure."""
    return Invalid.many(details_from_pydantic(exc, prefix))


# werkzeug keeps a route's methods in a set, whose order follows the process's string hashing: the same
# path listed them in another order after each restart.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allow_header(methods: Iterable[str]) -> str:
    """`methods` as an `Allow` header, in one order on every worker and host."""
    known = {m.upper() for m in methods}
    return ", ".join([m for m in _METHOD_ORDER if m in known] + sorted(known.difference(_METHOD_ORDER)))


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> Response:
    """Serialise an error in the contract's shape."""
    body = {"error": {"code": code, "message": message, "details": details or []}}
    rid = getattr(g, "request_id", None)
    if rid:
        body["error"]["request_id"] = rid
    response = jsonify(body)
    response.status_code = status
    return response


def error_body(status: int, message: str) -> bytes:
    """The contract's error body outside any request context: for the HTTP server's own refusals."""
    return json.dumps({"error": {"code": _HTTP_CODES.get(status, "error"), "message": message, "details": []}}).encode()


# An outage fails every request for a while: each worker says the same failure at most once in this
# many seconds, with how many requests the line stands for (each has its request line all the same).
UNAVAILABLE_LOG_SECONDS = 10.0
_said: dict[str, tuple[float, int]] = {}
_said_lock = threading.Lock()


def say_unavailable(message: str, what: str) -> None:
    """Log `what` with `message` as its error, at most once per UNAVAILABLE_LOG_SECONDS for the same message."""
    now = time.monotonic()
    with _said_lock:
        last, held = _said.get(message, (-UNAVAILABLE_LOG_SECONDS, 0))
        if now - last < UNAVAILABLE_LOG_SECONDS:
            _said[message] = (last, held + 1)
            return
        if len(_said) > 64:  # messages differ with the failure's details: keep the map small
            _said.clear()
        _said[message] = (now, 0)
    extra: dict[str, Any] = {"error": message, "request_id": getattr(g, "request_id", None)}
    if held:
        extra["requests_since_last_said"] = held
    log.warning(what, extra=extra)


def told(exc: ServiceError) -> tuple[int, str, bool]:
    """What a client is told of a failure: the status, the message, and whether to send Retry-After; a 503 is
    logged here (held to one line in a while), whoever answers it, the API or the console."""
    status = status_of(exc)
    if isinstance(exc, HostCannot):
        # Retrying will not help until an operator acts, so no Retry-After; the message names no host or path.
        say_unavailable(exc.message, "operator action needed")
        return status, exc.message, False
    if status == 503:
        # The driver's words name the database's host and port: the log keeps them, clients get the gist.
        say_unavailable(exc.message, "dependency unavailable")
        return status, exc.message if isinstance(exc, Busy) else UNAVAILABLE, True
    return status, exc.message, False


def register_error_handlers(app: Flask) -> None:
    """Install handlers so that no failure escapes in another shape."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if exc.status == 401:
            # RFC 9110 asks a 401 to name the scheme it wants; RFC 6750's "invalid_token" only for a bearer token sent.
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            sent = scheme.lower() == "bearer" and token.strip()
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if sent else "Bearer"
        return response

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        status, message, retry = told(exc)
        response = error_response(status, _HTTP_CODES[status], message, exc.details)
        if retry:
            response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "request body is larger than this service accepts"
        response = error_response(status, _HTTP_CODES.get(status, "error"), message)
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = allow_header(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(ParseException)
    def _unreadable(exc: ParseException) -> Response:
        # gunicorn parses a chunked body only as the app reads it, so its errors arrive here.
        return error_response(400, "bad_request", f"the request body could not be read ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": getattr(g, "request_id", None)})
        return error_response(500, "internal_error", "the service failed to answer; quote the request_id when reporting it")
