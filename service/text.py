"""Text the database can hold."""
from __future__ import annotations


def encodable(text: str) -> bool:
    """Whether `text` is UTF-8 once encoded: bytes that are not UTF-8 (a command line's, a JSON escape's) arrive as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
