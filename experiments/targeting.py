"""Targeting rules: which users an experiment may enrol, from attributes of the request and of their behaviour.

A rule is `{"all": [...]}` or `{"any": [...]}` of conditions `{"attribute", "op", "value"}`
and nested groups, at most `MAX_DEPTH` groups deep. Rules are parsed once into
frozen objects; matching is pure, so any decision can be replayed from the
attributes it saw. A condition on an attribute the user does not have is false
(`exists` asks exactly that), so a missing value never enrols anyone by accident.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from experiments.numbers import finite_number
from experiments.problems import Problems

MAX_DEPTH = 3
MAX_CONDITIONS = 100
# Request attributes are numbers of at most this magnitude (the service's bound on every number it
# takes), so a rule's own numbers are held to it too.
VALUE_BOUND = 1e12
# What a service computes from stored behaviour rather than takes from a request (it wins over a request
# attribute of the same name, which a client could spoof), and `points_balance.<experiment>`, a user's points
# in that experiment's ledger.
BUILTIN_ATTRIBUTES = ("idle_days", "purchases", "revenue", "days_since_first_seen")
BALANCE_PREFIX = "points_balance."
# The longest attribute value a request may send (the service's bound on `attr.*` and body attributes): a rule's
# text beyond it could never be equal to one (so eq and in never hold, and ne and not_in always do).
MAX_TEXT = 1000
Value = Union[str, float, bool, None]


class TargetingError(Problems):
    """A rule that cannot be accepted: one problem per bad condition, paths as targeting.all.1.op."""


def _raise_all(problems: list[tuple[str, str]]) -> None:
    """Raise what the parts of a group got wrong, all of it at once (nothing when they got nothing wrong)."""
    if problems:
        raise TargetingError(*problems[0], more=problems[1:])


# Numeric text as JSON writes a number: Python's float() also reads " 30 ", "+30", "3_0", "030", "30."
# and other scripts' digits ("٣٠"), which made the zip code "01234" the number 1234.
_NUMERIC_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def _number(value: Any) -> float | None:
    """A comparable number from a JSON number or numeric text (query parameters arrive as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if finite_number(value) else None
    if isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value):
        parsed = float(value)
        return parsed if math.isfinite(parsed) else None
    return None


_BOOLEAN_TEXT = {"true": True, "false": False}


def _equal(actual: Any, wanted: Any) -> bool:
    """Equality that lets text equal the number it spells as JSON would ("3" == 3, not "03") or, against a
    boolean in the rule, the boolean ("true" == true): the GET form of attributes arrives as text and
    must target as the JSON form does. Text against text compares exactly: the zip code "01234" is
    not "1234"."""
    if isinstance(wanted, bool):
        spelled = _BOOLEAN_TEXT.get(actual.lower()) if isinstance(actual, str) else actual
        return spelled is wanted
    if isinstance(actual, bool):
        return False
    if isinstance(wanted, str) and isinstance(actual, str):
        return actual == wanted
    x, y = _number(actual), _number(wanted)
    if x is not None and y is not None:
        return x == y
    return bool(actual == wanted)


def _ordered(compare: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def test(actual: Any, wanted: Any) -> bool:
        x, y = _number(actual), _number(wanted)
        return x is not None and y is not None and compare(x, y)

    return test


# op -> (test of the user's value against the rule's value, what the rule's value must be)
OPERATORS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "eq": (_equal, "scalar"),
    "ne": (lambda a, b: not _equal(a, b), "scalar"),
    "in": (lambda a, b: any(_equal(a, v) for v in b), "list"),
    "not_in": (lambda a, b: not any(_equal(a, v) for v in b), "list"),
    "lt": (_ordered(lambda a, b: a < b), "number"),
    "lte": (_ordered(lambda a, b: a <= b), "number"),
    "gt": (_ordered(lambda a, b: a > b), "number"),
    "gte": (_ordered(lambda a, b: a >= b), "number"),
    "exists": (lambda a, b: True, "none"),
}


@dataclass(frozen=True)
class Condition:
    """One test of one attribute."""

    attribute: str
    op: str
    value: Any = None

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Whether the user's attributes pass; an absent (or null) attribute fails every operator, `ne` and `not_in` too."""
        if self.attribute not in attributes or attributes[self.attribute] is None:
            return False
        return OPERATORS[self.op][0](attributes[self.attribute], self.value)


@dataclass(frozen=True)
class Group:
    """All or any of its parts."""

    mode: str
    parts: tuple[Union["Condition", "Group"], ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Whether the user's attributes pass the group."""
        results = (part.matches(attributes) for part in self.parts)
        return all(results) if self.mode == "all" else any(results)

    def attributes(self) -> set[str]:
        """Every attribute the rule reads."""
        found: set[str] = set()
        for part in self.parts:
            found |= part.attributes() if isinstance(part, Group) else {part.attribute}
        return found


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool)) or finite_number(value)


def _condition(spec: Mapping[str, Any], path: str) -> Condition:
    unknown = set(spec) - {"attribute", "op", "value"}
    if unknown:
        raise TargetingError(f"{path}.{sorted(unknown)[0]}", "is not a field of a condition (attribute, op, value)")
    attribute, op = spec.get("attribute"), spec.get("op")
    if not isinstance(attribute, str) or not 1 <= len(attribute) <= 128:
        raise TargetingError(f"{path}.attribute", "must be a name of 1 to 128 characters")
    if not isinstance(op, str) or op not in OPERATORS:  # a list or an object cannot even be looked up
        raise TargetingError(f"{path}.op", f"must be one of {', '.join(OPERATORS)}, got {op!r}")
    value = spec.get("value")
    kind = OPERATORS[op][1]
    if kind == "list" and not (isinstance(value, list) and 1 <= len(value) <= 1000 and all(_scalar(v) for v in value)):
        raise TargetingError(f"{path}.value", f"{op} needs a list of 1 to 1000 strings, numbers or booleans")
    if kind == "number" and _number(value) is None:
        raise TargetingError(f"{path}.value", f"{op} needs a finite number")
    if kind == "scalar" and not _scalar(value):
        raise TargetingError(f"{path}.value", f"{op} needs a string, number or boolean")
    if kind == "none" and value is not None:
        raise TargetingError(f"{path}.value", "exists takes no value")
    return Condition(attribute, op, tuple(value) if isinstance(value, list) else value)


def _group(spec: Any, path: str, depth: int, budget: list[int]) -> Group:
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in ("all", "any"):
        raise TargetingError(path, 'must be {"all": [...]} or {"any": [...]}')
    if depth > MAX_DEPTH:
        raise TargetingError(path, f"groups nest at most {MAX_DEPTH} deep")
    mode, parts = next(iter(spec.items()))
    if not isinstance(parts, list) or not parts:
        raise TargetingError(f"{path}.{mode}", "must be a non-empty list of conditions or groups")
    parsed: list[Condition | Group] = []
    problems: list[tuple[str, str]] = []  # each part's, so that one answer names every bad condition
    for i, part in enumerate(parts):
        where = f"{path}.{mode}.{i}"
        budget[0] -= 1
        if budget[0] < 0:  # past the bound, no part is read: one problem, said once, after those found before it
            _raise_all([*problems, (where, f"a rule holds at most {MAX_CONDITIONS} conditions and groups")])
        try:
            if isinstance(part, Mapping) and ("all" in part or "any" in part):
                parsed.append(_group(part, where, depth + 1, budget))
            elif isinstance(part, Mapping):
                parsed.append(_condition(part, where))
            else:
                raise TargetingError(where, "must be a condition or a group")
        except TargetingError as exc:
            problems.extend(exc.problems)
            if budget[0] < 0:
                _raise_all(problems)
    _raise_all(problems)
    return Group(mode, tuple(parsed))


def parse_rule(spec: Any, path: str = "targeting") -> Group:
    """A validated rule; TargetingError names the path of every bad part (the first in its message)."""
    return _group(spec, path, 1, [MAX_CONDITIONS])


def require_values(rule: Group, path: str = "targeting") -> None:
    """Refuse a condition whose value is null or left out, and a null in a list: such a rule matches
    nobody, so the experiment would enrol no one without a word (`exists` tests presence). Refuse a
    number beyond VALUE_BOUND too, but on a sum over a user's history: no request attribute reaches
    it, so the condition could never, or would always, hold.

    Checked on rules being written, not on stored ones: a rule stored before this check must still be read.
    """
    problems: list[tuple[str, str]] = []
    for i, part in enumerate(rule.parts):
        where = f"{path}.{rule.mode}.{i}"
        try:
            if isinstance(part, Group):
                require_values(part, where)
            else:
                _require_value(part, where)
        except TargetingError as exc:
            problems.extend(exc.problems)
    _raise_all(problems)


def _summed(attribute: str) -> bool:
    """Whether a built-in attribute adds up a user's history, and so has no bound but a double's."""
    return attribute in ("purchases", "revenue") or attribute.startswith(BALANCE_PREFIX)


def _require_value(part: Condition, where: str) -> None:
    values = part.value if isinstance(part.value, tuple) else (part.value,)
    if OPERATORS[part.op][1] in ("scalar", "list") and None in values:
        raise TargetingError(f"{where}.value", f"{part.op} needs {'a list of ' if OPERATORS[part.op][1] == 'list' else 'a '}string, number or boolean, not null (exists tests that an attribute is there)")
    # Numeric text too: a rule compares "1e13" as the number it spells. A sum over a user's history (revenue,
    # purchases, a points balance) grows past any request attribute's bound: only finite there.
    bound = math.inf if _summed(part.attribute) else VALUE_BOUND
    if any(
        (isinstance(v, (int, float)) and not isinstance(v, bool) and not -bound <= v <= bound)
        or (isinstance(v, str) and _NUMERIC_TEXT.fullmatch(v) is not None and not -bound <= float(v) <= bound)
        for v in values
    ):
        said = "must be finite numbers" if bound == math.inf else f"are at most {VALUE_BOUND:.0e} in magnitude, as the attributes it tests are"
        raise TargetingError(f"{where}.value", f"numbers in a rule {said}")
    if any(isinstance(v, str) and (len(v) > MAX_TEXT or "\x00" in v) for v in values):
        raise TargetingError(f"{where}.value", f"each text value in a rule is at most {MAX_TEXT:,} characters, without NUL, as the attribute values a request sends are")
    if "\x00" in part.attribute:
        raise TargetingError(f"{where}.attribute", "an attribute name cannot contain NUL, as no request can send one")
