"""The one hash behind every deterministic draw: enrolment, arms and reward schedules.

SHA-256 over the parts joined by a unit separator, first 8 bytes big-endian:
the same on any machine, any Python and any library version, so every
assignment and every random reward can be recomputed and audited.
"""
from __future__ import annotations

import hashlib

_TWO_64 = float(2**64)


def hash64(*parts: str) -> int:
    """A 64-bit integer fixed by the parts."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def unit_hash(*parts: str) -> float:
    """A uniform number in [0, 1) fixed by the parts."""
    return hash64(*parts) / _TWO_64
