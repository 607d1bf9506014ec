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
from urllib.parse import quote, unquote_to_bytes, urlsplit

from werkzeug.routing import PathConverter

_KEPT = re.compile(r"(%2[fF]|%25)")
_UNDO = {"%2f": "/", "%25": "%"}


def decoded_keeping_slashes(raw_path: str) -> str:
    """A raw path (latin-1 text of its bytes, as WSGI hands them) with every escape decoded but %2F and %25."""
    pieces = _KEPT.split(raw_path)
    data = b"".join(piece.encode("latin-1") if i % 2 else unquote_to_bytes(piece.encode("latin-1")) for i, piece in enumerate(pieces))
    return data.decode("latin-1")


def _fully_decoded(raw_path: str) -> str:
    return unquote_to_bytes(raw_path.encode("latin-1")).decode("latin-1")


class KeepEscapedSlashes:
    """WSGI middleware: PATH_INFO from the request target as sent (RAW_URI from gunicorn and werkzeug,
    REQUEST_URI from uWSGI and mod_wsgi), when it is the path the server decoded and nothing else: a
    prefix a proxy or the server took off (SCRIPT_NAME) is matched, and anything that does not match
    exactly leaves the server's path, with '%' escaped so that the converter's undoing changes nothing."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        decoded = environ.get("PATH_INFO", "")
        environ["PATH_INFO"] = self._as_sent(environ, decoded) or decoded.replace("%", "%25")
        return self.app(environ, start_response)

    @staticmethod
    def _as_sent(environ: dict[str, Any], decoded: str) -> str | None:
        target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        path = urlsplit(target).path  # also of an absolute-form target (http://host/path); no query, no fragment
        script = environ.get("SCRIPT_NAME", "")
        if not path.startswith("/") or _fully_decoded(path) != script + decoded:
            return None
        # The prefix as sent: the shortest head of the raw path that decodes to SCRIPT_NAME (a character
        # is at most three as sent).
        for cut in range(min(len(path), 3 * len(script)) + 1):
            if _fully_decoded(path[:cut]) == script and _fully_decoded(path[cut:]) == decoded:
                return decoded_keeping_slashes(path[cut:])
        return None


class IdConverter(PathConverter):
    """`<id:name>`: an id in a path. `%2F` in it is a '/' of the id (`sku%2F9`), and so, for servers or
    clients that decode it first, is a bare '/' (`sku/9`); newlines too, so that `_check_path` refuses
    a bad id with a 422 rather than a 404. It cannot start with a bare '/', which keeps `//x` from naming `x`."""

    regex = r"[^/][\s\S]*?"

    def to_python(self, value: str) -> str:
        return _KEPT.sub(lambda m: _UNDO[m.group(1).lower()], value)

    def to_url(self, value: str) -> str:
        return quote(value, safe="")


class VersionConverter(IdConverter):
    """`<version:name>`: a model version, which never holds a '/': `GET /v1/models/1/activate` is then
    the wrong method on a known path (405), not a read of a version named `1/activate` (404)."""

    regex = r"[^/]+"
    part_isolating = True
