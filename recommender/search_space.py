"""Search dimensions for tuning: a numeric range or a set of choices, and how a request spells them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

SPELLING = 'expected [low, high], [low, high, "log"] or {"choices": [...]}'


@dataclass(frozen=True)
class Range:
    """Numbers from low to high, sampled evenly or, with `log`, evenly in their logarithm."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        try:
            finite = math.isfinite(self.low) and math.isfinite(self.high)
        except OverflowError:  # an int past 1e308, which JSON can carry
            finite = False
        if not finite:
            raise ValueError("low and high must be finite numbers")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range must start above 0, not at {self.low:g}")

    def ends(self) -> tuple[Any, ...]:
        """The values that bound the range, to validate against a model's parameters."""
        return (self.low, self.high)

    def to_json(self) -> list[Any]:
        """The request spelling."""
        return [self.low, self.high, "log"] if self.log else [self.low, self.high]


@dataclass(frozen=True)
class Choice:
    """One of a few values."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("choices cannot be empty")
        if len(set(map(repr, self.options))) != len(self.options):
            raise ValueError("choices must be distinct")

    def ends(self) -> tuple[Any, ...]:
        """Every option."""
        return self.options

    def to_json(self) -> dict[str, list[Any]]:
        """The request spelling."""
        return {"choices": list(self.options)}


Dimension = Union[Range, Choice]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_dimension(raw: Any, integer: bool) -> Dimension:
    """A dimension from its request spelling; `integer` when the parameter takes whole numbers."""
    if isinstance(raw, dict):
        if set(raw) != {"choices"} or not isinstance(raw["choices"], list):
            raise ValueError(SPELLING)
        if not all(isinstance(o, (str, int, float, bool)) for o in raw["choices"]):
            raise ValueError("choices must be strings, numbers or booleans")
        return Choice(tuple(raw["choices"]))
    if not isinstance(raw, (list, tuple)) or len(raw) not in (2, 3) or not all(_number(v) for v in raw[:2]):
        raise ValueError(SPELLING)
    if len(raw) == 3 and raw[2] not in ("log", "linear"):
        raise ValueError(f'the third entry may only be "log" or "linear", not {raw[2]!r}')
    low, high = raw[0], raw[1]
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise ValueError("this parameter takes whole numbers, so low and high must be integers")
    return typed(Range(low, high, log=len(raw) == 3 and raw[2] == "log"), integer)


def typed(dim: Dimension, integer: bool) -> Dimension:
    """A range with ints for a whole-number parameter and floats otherwise, so the sampler draws the right kind."""
    if isinstance(dim, Choice):
        return dim
    kind = int if integer else float
    return Range(kind(dim.low), kind(dim.high), dim.log)
