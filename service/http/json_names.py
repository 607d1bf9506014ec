"""Refusing JSON objects that give one name twice.

RFC 8259 leaves such an object's meaning open, and parsers keep the last value silently:
`{"events": [...], "events": []}` stored nothing, and an event naming `value` twice stored
whichever came last. The schemas' parser cannot tell, so a body is read first by the standard
library's, whose hook sees every object's names in order: 14 to 28 ms of CPU on a
10,000-event batch on its own, in a whole request of about 230 (docs/benchmarks.md).
"""
from __future__ import annotations

import json
from typing import Any


class _Repeated(ValueError):
    """An object gave this name twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) < len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Repeated(name)
            seen.add(name)
    return members


def repeated_name(raw: bytes | str) -> str | None:
    """The first name that some object of this JSON text gives twice, or None."""
    try:
        json.loads(raw, object_pairs_hook=_unique)
    except _Repeated as exc:
        return str(exc.args[0])
    except (ValueError, RecursionError):  # not JSON, or past the standard parser's bounds: the caller's parser judged it
        return None
    return None


def repeated_message(name: str) -> str:
    """The refusal, naming the repeated name."""
    return f"the JSON gives the name {name[:64]!r} twice in one object; each name may appear once"
