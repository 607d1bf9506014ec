"""Render docs/http-reference.md from the service's own OpenAPI document (`make docs`).

The reference is generated, never written by hand, so it cannot drift from the
endpoint declarations: `tests/http/test_docs.py` renders it again and compares.

    .venv/bin/python docs/generate_reference.py          # write docs/http-reference.md
    .venv/bin/python docs/generate_reference.py --check  # exit 1 if the file is out of date
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "http-reference.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.config import Config  # noqa: E402
from service.http.app import create_app  # noqa: E402
from service.http.openapi import build_openapi  # noqa: E402
from service.http.spec import TAGS  # noqa: E402
from experiments.definitions import KEY_PATTERN  # noqa: E402
from service.http.schemas.common import ID_PATTERN, MAX_BATCH, MAX_MAGNITUDE  # noqa: E402
from service.usecases.keys import KEY_CACHE_SECONDS, ROLES  # noqa: E402

Schema = dict[str, Any]

# Patterns the schemas share, said in words.
PATTERNS = {
    ID_PATTERN: "1-128 characters, no NUL",
    r"^[^\x00]*$": "no NUL",
    KEY_PATTERN.pattern: f"key: `{KEY_PATTERN.pattern}`",
    r"^[0-9]{1,18}$": "1-18 digits, as next_cursor gave them",
}
_REF = "#/components/schemas/"
STATUS_TEXT = {"503": "The database cannot be reached", "500": "A bug; quote the request_id"}


def _number(value: float) -> str:
    """A bound or default as people write it: 1e12, 10,000, 0.05."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and abs(value) >= 1_000_000 and str(abs(value)).rstrip("0") == "1":
        return f"{'-' if value < 0 else ''}1e{len(str(abs(value))) - 1}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return repr(value)


CONVENTIONS = f"""\
# HTTP reference

Generated from the service's OpenAPI document (`GET /openapi.json`) by
`docs/generate_reference.py`. Do not edit it by hand: after changing an endpoint or a schema, run
`make docs`. `tests/http/test_docs.py` fails whenever this file and the code disagree.

## Conventions

These hold for every endpoint below.

- **Format.** Requests and answers are JSON in UTF-8. The exceptions are
  `GET /v1/experiments/{{key}}/results.csv` and `GET /v1/users/at-risk.csv` (CSV) and the three endpoints that are not part of
  the API proper and so are not listed below: `GET /openapi.json` (this document as JSON),
  `GET /docs` (an HTML page listing the endpoints) and `GET /metrics` (Prometheus text).
- **Authentication.** Every `/v1` call sends `Authorization: Bearer <key>`. A key is created with
  `.venv/bin/flask --app wsgi create-key --role ROLE` (the key is the last line printed) or with
  `POST /v1/keys`, and is stored only as its SHA-256 digest, so it is shown once. A revoked key
  fails on every worker and every host within {_number(KEY_CACHE_SECONDS)} second: each worker remembers a key it has
  verified for at most that long, and never remembers an unknown one.
- **Roles.** A key has one role: `storefront` for the shop's own calls, `editor` for those who
  design experiments and manage models, `analyst` for those who read results, `admin` for
  everything including keys. Each operation below lists the roles it admits; in sum:

ROLE_TABLE

- **Errors.** Every failure the service answers, whatever its status, has one shape:
  `{{"error": {{"code": "validation_error", "message": "a sentence", "details": [...], "request_id": "..."}}}}`.
  Each entry of `details` names a bad field (`{{"field": "events.3.timestamp", "message": "...",
  "index": 3}}`; `index` is the entry's position when the field sits in a batch). `request_id`
  is the request's `X-Request-ID` header when the client sent a usable one, a fresh id
  otherwise; it is also sent back as the `X-Request-ID` response header and appears in the logs.
  Requests the HTTP server refuses before the app reads them (a request line or a header too
  long, a malformed request line) get the same shape without `request_id`.
- **HEAD** is answered wherever GET is, except on the two GETs that can record an exposure
  (`GET /v1/experiments/{{key}}/assignment`, `GET /v1/users/{{user_id}}/recommendations`): there it is a
  405 that records nothing, and `Allow` (on any 405 there) lists `GET, OPTIONS`.
- **OPTIONS** answers 204, with no body and no key needed, and `Allow` listing the path's methods.
- **Status codes.**

  | status | `code` | when |
  | --- | --- | --- |
  | 400 | `bad_request` | the body is not valid JSON or gives a name twice in one object, or a required body is missing, or a URL's %-escapes are not UTF-8 |
  | 401 | `unauthorized` | no key, or an unknown or revoked key; the answer carries `WWW-Authenticate: Bearer` |
  | 403 | `forbidden` | the key's role may not call the operation |
  | 404 | `not_found` | the named resource (or path) does not exist |
  | 405 | `method_not_allowed` | the path exists but not with this method (the `Allow` header lists the methods); answered before the key is read |
  | 409 | `conflict` | the resource's state forbids the change (e.g. changing the arms of a running experiment) |
  | 413 | `batch_too_large`, `payload_too_large` | a batch holds more than {MAX_BATCH:,} entries, or the body is larger than `MAX_CONTENT_LENGTH` |
  | 414 | `uri_too_long` | the request line is over 8,190 bytes (from gunicorn, without `request_id`) |
  | 415 | `unsupported_media_type` | the body carries a `Content-Encoding` (gzip, br, ...): send the JSON itself |
  | 422 | `validation_error` | validation failed; `details` names each bad field |
  | 431 | `headers_too_large` | a header line, `Name: value` with its line break, is over 8,190 bytes, or the request carries over 100 headers (from gunicorn, without `request_id`) |
  | 503 | `unavailable` | the database cannot be reached (any operation that reads or writes it): `Retry-After: 1`, and the reason is in the server's log, not the answer; or the server needs its operator before it can do this (a database without this release's tables, a model folder where training cannot start): no `Retry-After`, and the message says what |
  | 500 | `internal_error` | a bug; the message asks to quote the `request_id` |

  A bad key is answered with 401 or 403 before the path, query or body is validated. A request
  line or header too long for gunicorn never reaches the service: gunicorn refuses it itself (414
  or 431), in the same error shape.
- **Validation.** A request is validated whole before anything is stored, and a batch is then
  stored in one transaction: bad input never stores anything partially and never causes a 500.
  Bodies refuse unknown fields and do not coerce types (`"value": "12"` is a 422; an integer field takes
  `5` or `5.0`, which JSON Schema counts as the same integer, but not `5.5`). Query
  parameters are read from text: numbers in plain digits (`n=5` or `n=5.0`, `alpha=0.05`, `alpha=5e-2`;
  not `5_0` or `+5`); booleans as `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`); a `+` in a
  timestamp escaped as `%2B`, since a bare `+` in a query reads as a space. A body is read as UTF-8
  JSON whatever its `Content-Type` says; a byte-order mark, or nesting deeper than about 190
  levels, is a 400. A parameter given twice, and an unknown one (also on an
  endpoint that takes none, except `/healthz`, `/readyz` and the documents `/openapi.json` and `/docs`, which ignore them), is a 422. A URL whose %-escapes do not decode to UTF-8 is a 400; a
  chunked body over `MAX_CONTENT_LENGTH` is a 413 like any other (also on an action that takes no
  body), and a body that ends before its `Content-Length` (a client that gave up) is a 400, not acted on.
- **Limits.**
  - Batches (`items`, `events`, `outcomes`) hold at most {MAX_BATCH:,} entries; request bodies are at
    most `MAX_CONTENT_LENGTH` bytes (32 MiB unless configured).
  - Ids (`user_id`, `item_id`, `event_id`, ...) are 1-128 characters without NUL; experiment, arm
    and metric keys match `{KEY_PATTERN.pattern}`. Percent-escape an id in a path, `/` as
    `%2F` included: `/v1/users/shop%2F7/recommendations` is user `shop/7`. The server routes on the
    path as sent (under gunicorn, or any server that passes it on as `RAW_URI` or `REQUEST_URI`), so
    an escaped `/` stays inside its id: `/v1/items/x%2Fsimilar` is the item `x/similar` and
    `/v1/items/%2Flead` the item `/lead`; between the path's own segments (`/v1%2Fitems/popular`)
    it separates nothing. A bare `/` is read as part of an id where
    the route allows (`/v1/users/shop/7/recommendations` names `shop/7` too), but only escaping is
    safe in general: HTTP clients (curl, requests) resolve `.` and `..` segments before sending, so
    `shop/../7` sent unescaped reaches user `7`. What no path can name: on `GET /v1/items/{{item_id}}`,
    the item `popular`; the ids `.` and `..` from a browser, which resolves even `%2e%2e`; `%2F` behind
    a proxy that refuses or decodes it (Apache by default). An id holding a comma cannot be listed in
    `exclude`.
  - Timestamps are ISO 8601 text in extended form with a time zone (`2026-11-22T10:00:00Z`,
    `2026-11-22T12:00:00+02:00`, or `+02`; a space may stand for the `T`, seconds may be left out, and a
    fraction of a second follows a point or a comma); one without a zone, epoch seconds, or the basic form, ordinal and week dates, is a 422. They must lie between 2000-01-01T00:00:00Z and 100 calendar years
    after the server's clock. A timestamp left out means "now" on the server. A timestamp sent is
    stored as given, also an assignment's (an exposure logged late): an exposure dated before the
    experiment's start counts the user's events from then on as after it, so send the real time.
  - Numbers are finite and at most {_number(MAX_MAGNITUDE)} in magnitude unless a field states other bounds.
    Numbers inside free-form objects (an item's `attributes`, an arm's `payload`) need only be
    finite: they are stored as sent and never summed.
- **Idempotency.** `event_id`, `outcome_id` and `action_id` identify an entry: sending it again is
  counted as a duplicate (or, for rewards, answers the first result) and stores nothing new. Each
  names one entry in the whole service, whatever its experiment: an order reported or rewarded in
  two experiments needs an id for each (`order-1001/points-q4`, `order-1001/checkout-double`); an
  outcome under an id already used counts as a duplicate, a reward action as a 409. The first entry
  under an id is the one kept, within one batch too (of outcomes, the first for an exposed user): a
  later entry under the same id counts as a duplicate whatever it holds, so a retry never changes
  what was stored, and an outcome under a stored id is a duplicate even for a user never exposed.
  Otherwise an outcome or a reward action for a user never exposed to the experiment stores nothing
  (`ignored`, or `recorded: false`), so it can be sent again once the user has an assignment.
- **Upserts.** An item field left out or sent as null keeps its stored value (clients that write
  every field of their record send null for what they do not know); `""` clears a title or a
  category, `{{}}` the attributes.

In the tables below, a type named in a link is described under [Schemas](#schemas). Request
schemas list each field's bounds (*constraints*) and default; answer schemas list the fields an
answer carries (a type ending in "or null" may be null).
"""


def _admitted(op: Schema) -> set[str]:
    """The roles an operation's description admits ("Roles: admin, editor")."""
    found = re.match(r"Roles: (.*)", op.get("description", ""))
    return {r.strip() for r in found.group(1).split(",")} if found else set()


def role_table(by_tag: dict[str, list[tuple[str, str, Schema]]], titles: dict[str, str]) -> list[str]:
    """Which sections (or which operations of a section) each role may call."""
    rows = ["  | role | may call |", "  | --- | --- |"]
    for role in ROLES:
        parts = []
        for tag, title in titles.items():
            mine = [f"`{m.upper()} {p}`" for p, m, op in by_tag[tag] if role in _admitted(op)]
            if mine:
                parts.append(title if len(mine) == len(by_tag[tag]) else f"{title} ({', '.join(mine)})")
        rows.append(f"  | `{role}` | {_cell('; '.join(parts) or 'nothing')} |")
    return rows


def _slug(text: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", text.lower()).replace(" ", "-")


def _cell(text: str) -> str:
    """Text that is safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _model_link(name: str) -> str:
    return f"[{name}](#{_slug('Schema: ' + name)})"


def _without_null(schema: Schema) -> tuple[list[Schema], bool]:
    """The alternatives of a schema other than null, and whether null is allowed."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if options is None:
        return [schema], False
    return [o for o in options if o.get("type") != "null"], any(o.get("type") == "null" for o in options)


def type_of(schema: Schema) -> str:
    """A schema's type in words, with links to named models."""
    if "$ref" in schema:
        return _model_link(schema["$ref"].removeprefix(_REF))
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " | ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        options, nullable = _without_null(schema)
        text = " or ".join(type_of(o) for o in options)
        if "discriminator" in schema:
            text = f"one of {text} (chosen by `{schema['discriminator']['propertyName']}`)"
        return text + (" or null" if nullable else "")
    kind = schema.get("type")
    if kind == "array":
        return f"list of {type_of(schema.get('items', {}))}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"object of {type_of(extra)}" if isinstance(extra, dict) and extra else "object"
    if kind == "string" and schema.get("format") == "date-time":
        return "timestamp"
    return str(kind) if kind else "any"


def _range(schema: Schema) -> str | None:
    low = ("<", schema["exclusiveMinimum"]) if "exclusiveMinimum" in schema else ("<=", schema["minimum"]) if "minimum" in schema else None
    high = ("<", schema["exclusiveMaximum"]) if "exclusiveMaximum" in schema else ("<=", schema["maximum"]) if "maximum" in schema else None
    if low and high:
        return f"{_number(low[1])} {low[0]} x {high[0]} {_number(high[1])}"
    if low:
        return f"x {'>' if low[0] == '<' else '>='} {_number(low[1])}"
    if high:
        return f"x {high[0]} {_number(high[1])}"
    return None


def _sized(schema: Schema, low_key: str, high_key: str, unit: str) -> str | None:
    low, high = schema.get(low_key), schema.get(high_key)
    if low is not None and high is not None:
        return f"{_number(low)}-{_number(high)} {unit}"
    if high is not None:
        return f"at most {_number(high)} {unit}"
    if low is not None:
        return f"at least {_number(low)} {unit}"
    return None


def constraints(schema: Schema) -> str:
    """The bounds a schema enforces, in words."""
    # JSON Schema sizes strings in characters; a bound on bytes is this service's own keyword.
    bytes_bound = _sized(schema, "", "x-maxBytes", "bytes of UTF-8")
    parts: list[str] = [bytes_bound] if bytes_bound else []
    for option in _without_null(schema)[0]:
        if option.get("format") == "date-time":
            window = f", {option['x-formatMinimum']} to {option['x-maxYearsAhead']} years after the server's clock" if "x-formatMinimum" in option else ""
            parts.append("ISO 8601 with a zone" + window)
        for part in (_range(option), _sized(option, "minLength", "maxLength", "characters"), _sized(option, "minItems", "maxItems", "entries")):
            if part:
                parts.append(part)
        pattern = option.get("pattern")
        if pattern:
            parts.append(PATTERNS.get(pattern, f"pattern `{pattern}`"))
        if option.get("uniqueItems"):
            parts.append("no entry twice")
        items = option.get("items")
        if isinstance(items, dict) and "$ref" not in items and constraints(items):
            parts.append(f"each: {constraints(items)}")
    return "; ".join(dict.fromkeys(parts))


def _default(schema: Schema) -> str:
    return f"`{json.dumps(schema['default'])}`" if "default" in schema else ""


def field_table(model: Schema) -> list[str]:
    """One row per property: with bounds and defaults for a request schema, name and type for an answer."""
    properties = model.get("properties", {})
    if not properties:
        return ["No fields."]
    described = any("description" in p for p in properties.values())
    is_request = model.get("additionalProperties") is False  # request schemas refuse unknown fields
    head = ["field", "type", "required", "constraints", "default"] if is_request else ["field", "type"]
    head += ["description"] if described else []
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    required = set(model.get("required", []))
    for name, prop in properties.items():
        cells = [f"`{name}`", type_of(prop)]
        if is_request:
            cells += ["yes" if name in required else "no", constraints(prop), _default(prop)]
        cells += [prop.get("description", "")] if described else []
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _refs(schema: Any) -> Iterable[str]:
    """Every model a schema names, at any depth."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            yield schema["$ref"].removeprefix(_REF)
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def _body_model(op: Schema, schemas: dict[str, Schema]) -> tuple[str, Schema] | None:
    body = op.get("requestBody")
    if body is None:
        return None
    name = body["content"]["application/json"]["schema"]["$ref"].removeprefix(_REF)
    return name, schemas[name]


def operation(path: str, method: str, op: Schema, schemas: dict[str, Schema]) -> list[str]:
    """One operation: summary, roles, parameters, body fields and responses."""
    lines = [f"### `{method.upper()} {path}`", "", op["summary"] + "."]
    lines += ["", "No authentication." if op.get("security") == [] else op.get("description", "") + "."]
    params = op.get("parameters", [])
    if params:
        lines += ["", "| parameter | in | type | required | constraints | default |", "| --- | --- | --- | --- | --- | --- |"]
        for p in params:
            s = p["schema"]
            cells = (f"`{p['name']}`", p["in"], type_of(s), "yes" if p.get("required") else "no", constraints(s), _default(s))
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    found = _body_model(op, schemas)
    if found is not None:
        name, model = found
        required = "required" if op["requestBody"].get("required") else "optional; an empty body means every default"
        lines += ["", f"Request body (JSON, {required}): `{name}`. {model.get('description', '')}", ""]
        lines += field_table(model)
    lines += ["", "| status | meaning | body |", "| --- | --- | --- |"]
    for status, response in op["responses"].items():
        meaning = "success" if status.startswith("2") else response["description"]
        if meaning == "Error":  # a status the document gives no words for
            meaning = STATUS_TEXT.get(status, meaning)
        body = ""
        for media, content in response.get("content", {}).items():
            schema = content.get("schema", {})
            body = type_of(schema) if "$ref" in schema else f"{type_of(schema)} (`{media}`)"
        lines.append(f"| {status} | {_cell(meaning)} | {_cell(body)} |")
    return lines + [""]


def _models_shown(paths: dict[str, Any], schemas: dict[str, Schema]) -> list[str]:
    """Models that operations link to (responses, and fields inside request bodies), with everything they name."""
    pending: list[str] = []
    for ops in paths.values():
        for op in ops.values():
            pending += list(_refs(op["responses"]))
            found = _body_model(op, schemas)
            if found is not None:
                pending += list(_refs(found[1]))
    shown: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in shown:
            shown.add(name)
            pending += list(_refs(schemas[name]))
    return sorted(shown)


def render(doc: dict[str, Any]) -> str:
    """The whole reference as Markdown."""
    schemas: dict[str, Schema] = doc["components"]["schemas"]
    by_tag: dict[str, list[tuple[str, str, Schema]]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            by_tag.setdefault(op["tags"][0], []).append((path, method, op))
    tags = [t for t in TAGS if t in by_tag]
    titles = {t: TAGS[t] for t in tags}
    conventions = CONVENTIONS.replace("ROLE_TABLE", "\n".join(role_table(by_tag, titles)))
    lines = [conventions, "## Contents", ""]
    for tag in tags:
        listed = ", ".join(f"`{m.upper()} {p}`" for p, m, _ in by_tag[tag])
        lines.append(f"- [{titles[tag]}](#{_slug(titles[tag])}): {listed}")
    lines.append("- [Schemas](#schemas)")
    for tag in tags:
        lines += ["", f"## {titles[tag]}", ""]
        for path, method, op in by_tag[tag]:
            lines += operation(path, method, op, schemas)
    lines += ["", "## Schemas", ""]
    for name in _models_shown(doc["paths"], schemas):
        model = schemas[name]
        lines += [f"### Schema: {name}", ""]
        if model.get("description"):
            lines += [model["description"], ""]
        lines += field_table(model) + [""]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def openapi_document(folder: Path) -> dict[str, Any]:
    """The OpenAPI document of an app built on a throwaway SQLite config under `folder` (never opened)."""
    config = Config(
        database_url=f"sqlite:///{folder / 'reference.db'}",
        model_dir=folder / "models",
        log_requests=False,
        log_level="WARNING",
        testing=True,
    )
    app = create_app(config)
    try:
        return build_openapi(app)
    finally:
        app.extensions["stickyloop"].close()


def main(argv: list[str]) -> int:
    """Write the reference, or with --check report whether it is current."""
    with tempfile.TemporaryDirectory(prefix="stickyloop-docs-") as folder:
        text = render(openapi_document(Path(folder)))
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date; run `make docs`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
