"""A request's input checked before a view runs: the body whole and as JSON, the query string, the path, the URL's encoding."""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import pydantic_core
from flask import current_app, request
from pydantic import BaseModel, ValidationError

from experiments.definitions import KEY_PATTERN
from service.errors import Invalid, detail
from service.http.errors import ApiError, validation_error
from service.http.json_names import repeated_message, repeated_name
from service.http.schemas.common import MAX_BATCH, Query
from service.http.spec import PATH_KINDS, EndpointSpec


def whole_body(cache: bool) -> bytes:
    """The request body, refused unless it arrived whole and as JSON itself: encoded (415), larger than the
    limit (413) or shorter than its Content-Length (400: a client that gave up halfway; what came would
    otherwise be acted on)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        # Read as it came, a gzip body was answered as malformed JSON, and a plain one labelled gzip obeyed.
        raise ApiError(415, f"the request body's Content-Encoding {encoding!r} is not accepted; send the JSON itself")
    raw = request.get_data(cache=cache)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    # A chunked body has no length to refuse up front: werkzeug stops reading at the limit, and
    # the cut text would have been answered as malformed JSON, or obeyed.
    if request.content_length is None and limit and len(raw) >= limit and request.environ["wsgi.input"].read(1):
        raise ApiError(413, f"the request body is larger than {limit:,} bytes")
    if request.content_length is not None and len(raw) < request.content_length:
        raise ApiError(400, f"the request body ended after {len(raw):,} of the {request.content_length:,} bytes its Content-Length announced")
    return raw


def parse_body(spec: EndpointSpec) -> BaseModel:
    """Parse and validate the JSON body whole, before anything is stored."""
    assert spec.body is not None
    raw = whole_body(cache=False)
    if not raw.strip():
        if spec.body_optional:
            raw = b"{}"
        else:
            raise ApiError(400, "the request needs a JSON body")
    # Before validation, so that the answer does not describe whichever copy of a repeated name came last.
    repeated = repeated_name(raw)
    if repeated is not None:
        raise ApiError(400, f"the request body is ambiguous: {repeated_message(repeated)}")
    try:
        parsed = spec.body.model_validate_json(raw)
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors()}
        if any(e["type"] == "json_invalid" and _OUT_OF_RANGE in str(e.get("ctx", {}).get("error", "")) for e in exc.errors()):
            # Valid JSON whose integer has more digits than the parser reads (Python's 4,300): a value out of bounds.
            raise Invalid.field("body", "holds a number of more digits than this service reads (4,300); no field takes such a number") from None
        # The parser takes NaN and Infinity, which JSON does not have: such a body is malformed, not invalid.
        if "json_invalid" in kinds or not _strict_json(raw):
            raise ApiError(400, "the request body is not valid JSON") from None
        if spec.batch_field and any(
            e["type"] == "too_long" and tuple(e["loc"]) == (spec.batch_field,) for e in exc.errors()
        ):
            raise ApiError(413, f"a batch holds at most {MAX_BATCH:,} entries", code="batch_too_large") from None
        raise validation_error(exc) from None
    return parsed


ATTRIBUTE_PREFIX = "attr."
MAX_QUERY_ATTRIBUTES, MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTE_VALUE = 50, 128, 1000
# Said in the endpoints' descriptions, so that the reference states the bounds the check below enforces.
QUERY_ATTRIBUTES_RULE = (
    f"at most {MAX_QUERY_ATTRIBUTES} of them, each NAME 1..{MAX_ATTRIBUTE_NAME} characters and each value at most {MAX_ATTRIBUTE_VALUE:,}"
)


def _query_attributes() -> dict[str, str]:
    """`attr.NAME=value` parameters, the GET form of targeting attributes."""
    found = {k[len(ATTRIBUTE_PREFIX):]: v for k, v in request.args.items() if k.startswith(ATTRIBUTE_PREFIX)}
    for name, value in found.items():
        if not 1 <= len(name) <= MAX_ATTRIBUTE_NAME or len(value) > MAX_ATTRIBUTE_VALUE or "\x00" in name + value:
            raise Invalid.field(
                f"query.{ATTRIBUTE_PREFIX}{name[:MAX_ATTRIBUTE_NAME]}",
                f"an attribute name is 1..{MAX_ATTRIBUTE_NAME} characters and its value at most {MAX_ATTRIBUTE_VALUE}",
            )
    if len(found) > MAX_QUERY_ATTRIBUTES:
        raise Invalid.field("query", f"at most {MAX_QUERY_ATTRIBUTES} attr. parameters")
    return found


def _validate_query(spec: EndpointSpec) -> BaseModel:
    """Validate the query string."""
    assert spec.query is not None
    # The first of two values would win without a word: exclude=a&exclude=b would show b.
    repeated = [name for name, values in request.args.lists() if len(values) > 1]
    if repeated:
        raise Invalid.many([
            detail(f"query.{name}", "is given more than once; send it once" + (" (it takes one comma-separated list)" if name == "exclude" else ""))
            for name in repeated
        ])
    args = request.args.to_dict(flat=True)
    if spec.query_attributes:
        args = {k: v for k, v in args.items() if not k.startswith(ATTRIBUTE_PREFIX)}
    try:
        return spec.query.model_validate(args)
    except ValidationError as exc:
        raise validation_error(exc, prefix="query") from None


# Storefronts send the same few query strings ("n=10") request after request, and validating one
# cost a recommendation request about a tenth of its time (16 of 158 us in one process). What a
# string parses to never changes, so each worker keeps up to MEMO_QUERIES short ones it accepted
# and starts afresh when full; a refused one is parsed again, a model whose strings name a user
# (`recurs`) is not kept, and query models are frozen, so a view cannot edit a shared one.
MEMO_QUERIES = 512
MEMO_QUERY_BYTES = 256
_parsed: dict[tuple[type[Query] | None, bool, bytes], tuple[BaseModel | None, dict[str, str]]] = {}


def query_and_attributes(spec: EndpointSpec) -> tuple[BaseModel | None, dict[str, str]]:
    """The validated query model (None without one) and the `attr.` parameters (empty unless the endpoint reads them)."""
    raw = request.query_string
    key = (spec.query, spec.query_attributes, raw)
    hit = _parsed.get(key)
    if hit is None:
        hit = (_validate_query(spec) if spec.query is not None else None, _query_attributes() if spec.query_attributes else {})
        if len(raw) <= MEMO_QUERY_BYTES and (spec.query is None or spec.query.recurs):
            if len(_parsed) >= MEMO_QUERIES:
                _parsed.clear()
            _parsed[key] = hit
    return hit[0], dict(hit[1])


def check_utf8() -> None:
    """A URL whose %-escapes decode to bytes that are not UTF-8 is refused, not read with stand-ins.

    werkzeug reads such a path with U+FFFD in place of the bad bytes and leaves a bad query escape
    as it was, so the same escape named two different users on two endpoints.
    """
    environ = request.environ
    raw = environ.get("RAW_URI")  # the request target as sent (gunicorn, werkzeug); PATH_INFO is decoded already
    try:
        if raw is not None:
            unquote_to_bytes(raw).decode("utf-8")
        else:
            environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")  # WSGI hands the path's bytes as latin-1
            unquote_to_bytes(environ.get("QUERY_STRING", "")).decode("utf-8")
    except UnicodeError:
        raise ApiError(400, "the URL is not valid UTF-8 once its %-escapes are decoded") from None


def refuse_query(spec: EndpointSpec) -> None:
    """An endpoint without query parameters refuses any, as the contract has unknown ones refused."""
    unknown = [name for name in request.args if not (spec.query_attributes and name.startswith(ATTRIBUTE_PREFIX))]
    if unknown:
        raise Invalid.many([detail(f"query.{name}", "is not a parameter of this endpoint") for name in unknown])


# How the JSON parser names a number it cannot hold (an integer of over 4,300 digits).
_OUT_OF_RANGE = "number out of range"


def _strict_json(raw: bytes) -> bool:
    """Whether the body is JSON as RFC 8259 has it: no NaN, Infinity or -Infinity."""
    try:
        pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError:
        return False
    return True


def refuse_body() -> None:
    """An action without a body (start, activate, cancel) refuses fields it would ignore, as the contract has
    unknown fields refused and malformed JSON a 400: none, or {}, is what it takes."""
    raw = whole_body(cache=True)
    if not raw.strip():
        return
    try:
        sent = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON") from None
    if sent not in ({}, None):
        raise Invalid.field("body", "this endpoint takes no body; send none, {} or null")


def check_path(spec: EndpointSpec, args: dict[str, Any]) -> None:
    """Path parameters follow the contract's id and key formats."""
    for name, kind in spec.path.items():
        # fullmatch: with match, '$' also matches before a final newline, letting 129 characters through.
        if name in args and not PATH_KINDS[kind].fullmatch(args[name]):
            rule = "must be 1 to 128 characters, none of them NUL" if kind == "id" else f"must match {KEY_PATTERN.pattern}"
            raise Invalid.field(name, rule)
