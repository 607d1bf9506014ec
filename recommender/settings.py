"""Settings from untrusted mappings (a request's JSON): names and types checked before a dataclass sees them.

A dataclass takes whatever it is given: "64" for an int fails later with a message about
comparing str and int, true passes for 1, and 64.5 factors fail only once training runs.
"""
from __future__ import annotations

import math
import types
from dataclasses import fields
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


def checked(cls: type[T], values: Mapping[str, Any], offered: Sequence[str] | None = None) -> T:
    """`cls(**values)` once every name is a field of `cls` and every value has the field's JSON type; ValueError otherwise.

    `offered`: the fields an unknown name's message lists, where some exist only for the code's sake.
    """
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    listed = known if offered is None else list(offered)
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"unknown setting {name!r}; " + (f"the settings are {', '.join(listed)}" if listed else "there are none"))
        expected = _problem(hints[name], value)
        if expected is not None:
            raise ValueError(f"{name} must be {expected}, not {value!r}")
    return cls(**values)


def _problem(hint: Any, value: Any) -> str | None:
    """What `value` should have been for `hint`, or None when it fits."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union or origin is types.UnionType:  # Optional[X] and X | None
        if value is None and type(None) in args:
            return None
        problems = [_problem(a, value) for a in args if a is not type(None)]
        return None if None in problems else " or ".join(p for p in problems if p)
    if origin is Literal:
        return None if value in args and isinstance(value, str) else "one of " + ", ".join(repr(a) for a in args)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return None if _finite(value) else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if isinstance(origin, type) and issubclass(origin, Mapping):
        if isinstance(value, Mapping) and all(isinstance(k, str) and _finite(v) for k, v in value.items()):
            return None
        return "an object of finite numbers"
    return None  # a type this module does not know: the dataclass checks it


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past 1e308, which JSON can carry, has no float
        return False
