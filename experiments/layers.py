"""Layers: mutually exclusive experiments sharing one audience.

Every user has one position in a layer, a uniform hash of (layer, user) in
[0, 1). Each running experiment in the layer owns a range of positions as
wide as its traffic, given at start (the first free range that fits) and kept
until it stops, so within a layer a user is in at most one experiment. The arm
still comes from each experiment's own salted hash, independent of the
position, so a range never biases arms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from experiments.hashing import unit_hash

# Ranges are compared with this slack, so that shares such as 0.1 + 0.2 still fit beside 0.7.
_EPS = 1e-12


@dataclass(frozen=True)
class Range:
    """The positions [start, end) an experiment owns in its layer."""

    experiment: str
    start: float
    end: float

    def holds(self, position: float) -> bool:
        """Whether a user at `position` falls in the range."""
        return self.start <= position < self.end


def position(layer: str, user_id: str) -> float:
    """The user's position in the layer, the same for every experiment in it."""
    return unit_hash("layer", layer, user_id)


def free_share(taken: Sequence[Range]) -> float:
    """How much of [0, 1) no range holds, to 12 decimals: 1 - (0.5 + 0.2) is 0.30000000000000004 in a double,
    and no share finer than that holds a user of any shop."""
    return round(max(0.0, 1.0 - math.fsum(r.end - r.start for r in taken)), 12)


def first_fit(taken: Sequence[Range], width: float) -> tuple[float, float] | None:
    """The range to claim in the first gap at least `width` wide, or None when no gap is.

    A gap short of `width` by the slack still fits, and the range then ends where the gap does:
    it never reaches into a neighbour, and a gap of nothing holds nothing, however narrow the ask.
    """
    cursor = 0.0
    for r in sorted(taken, key=lambda r: r.start):
        if r.start > cursor and r.start - cursor >= width - _EPS:
            return cursor, min(cursor + width, r.start)
        cursor = max(cursor, r.end)
    return (cursor, min(cursor + width, 1.0)) if 1.0 > cursor and 1.0 - cursor >= width - _EPS else None


def largest_gap(taken: Sequence[Range]) -> float:
    """The widest gap between ranges, the most traffic one more experiment could have."""
    gaps, cursor = [], 0.0
    for r in sorted(taken, key=lambda r: r.start):
        gaps.append(r.start - cursor)
        cursor = max(cursor, r.end)
    gaps.append(1.0 - cursor)
    return max(0.0, max(gaps))
