"""Ids in paths as the client escaped them: `%2F` and `%25` stay escaped until the id is read.

A server decodes the path before routing, so `/v1/items/x%2Fsimilar` (the item `x/similar`) became
`/v1/items/x/similar` (the similar items of `x`), and `%2Flead` an empty segment that no route
matched: ids the API had stored could not be read back. The path is decoded again here from the
request target as sent, every escape but those two, and the `id` converter undoes them in its
segment alone.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable
from urllib.parse import quote, unquote_to_bytes

from werkzeug.routing import PathConverter

_KEPT = re.compile(r"(%2[fF]|%25)")
_UNDO = {"%2f": "/", "%25": "%"}


def decoded_keeping_slashes(raw_path: str) -> str:
    """A raw path (latin-1 text of its bytes, as WSGI hands them) with every escape decoded but %2F and %25."""
    pieces = _KEPT.split(raw_path)
    data = b"".join(piece.encode("latin-1") if i % 2 else unquote_to_bytes(piece.encode("latin-1")) for i, piece in enumerate(pieces))
    return data.decode("latin-1")


class KeepEscapedSlashes:
    """WSGI middleware: PATH_INFO from the request target as sent (RAW_URI, which gunicorn and werkzeug set)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raw = environ.get("RAW_URI") or ""
        path = raw.split("?", 1)[0]
        script = environ.get("SCRIPT_NAME", "")
        if path.startswith("/") and path.startswith(script):
            environ["PATH_INFO"] = decoded_keeping_slashes(path[len(script):])
        else:  # no target to read (another server): escape '%' so that the converter's undoing changes nothing
            environ["PATH_INFO"] = environ.get("PATH_INFO", "").replace("%", "%25")
        return self.app(environ, start_response)


class IdConverter(PathConverter):
    """`<id:name>`: an id in a path. `%2F` in it is a '/' of the id (`sku%2F9`), and so, for servers or
    clients that decode it first, is a bare '/' (`sku/9`); newlines too, so that `_check_path` refuses
    a bad id with a 422 rather than a 404. It cannot start with a bare '/', which keeps `//x` from naming `x`."""

    regex = r"[^/][\s\S]*?"

    def to_python(self, value: str) -> str:
        return _KEPT.sub(lambda m: _UNDO[m.group(1).lower()], value)

    def to_url(self, value: str) -> str:
        return quote(value, safe="")
