"""Text the database can hold."""
from __future__ import annotations


def encodable(text: str) -> bool:
    """Whether `text` is UTF-8 once encoded: bytes that are not UTF-8 (a command line's, a JSON escape's) arrive as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Marks and controls that reorder the text around them (LRM, RLM, ALM, the embeddings, overrides and isolates).
_BIDI_CONTROLS = {c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def bidi_escaped(text: str) -> str:
    """`text` with its bidirectional controls spelled as `\\u202e` escapes, for quoting stored text inside a
    sentence or a JSON document: left in, a right-to-left override in a key's name reversed the rest of the sentence."""
    return text.translate(_BIDI_CONTROLS)
