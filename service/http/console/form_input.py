"""What every console form shares: reading JSON and numbers typed into a field, the schema's messages in a
form's words, and what a form refused over a change since it was opened still differs in."""
from __future__ import annotations

import json
import re
from typing import Any, Collection, Iterable, Mapping, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError

from experiments.definitions import KEY_PATTERN
from service.errors import Invalid
from service.http.console.formatting import field_label
from service.http.json_names import repeated_message, repeated_name

_ROW = re.compile(r"^((?:arms|metrics)\.\d+)\.")
_LOCAL_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d)(?::(\d\d)(?:\.(\d+))?)?")


def _as_read(value: str) -> Any:
    """A field's value as what it means: "0.50" is 0.5, a time with or without ":00.000" the same time, JSON spaced either way.
    A browser also sends a text area's line ends as CRLF."""
    text = value.replace("\r\n", "\n").strip()
    try:
        return float(text)
    except ValueError:
        pass
    moment = _LOCAL_TIME.fullmatch(text)
    if moment:
        return moment.group(1), int(moment.group(2) or 0), (moment.group(3) or "").rstrip("0")
    if text[:1] in ("{", "["):
        try:  # the bounded parser: this reads any field of a stale form, "[" * 100_000 included
            return json.dumps(pydantic_core.from_json(text), sort_keys=True)
        except ValueError:
            pass
    return text


def _rows(fields: Iterable[str]) -> set[str]:
    """The arm and metric rows ("arms.2") a form's fields belong to."""
    return {m.group(1) for name in fields if (m := _ROW.match(name))}


def _unused(name: str, typed: Mapping[str, str], stored: Mapping[str, str]) -> bool:
    """Whether a field posts a value that neither version uses: a blank arm or metric row (its kind still posts
    the select's first choice), or a bandit setting while neither version is a bandit (the form hides them).
    Naming those in a conflict sends the editor looking for changes nobody made."""
    row = _ROW.match(name)
    if row is not None:
        return not typed.get(f"{row.group(1)}.key", "").strip() and not stored.get(f"{row.group(1)}.key", "").strip()
    return name.startswith("bandit.") and "bandit" not in (typed.get("type"), stored.get("type"))


def kept_over_a_change(typed: dict[str, str], stored: dict[str, str], names: Iterable[str] | None = None) -> tuple[dict[str, str], str]:
    """A form refused because what it edits changed since it was opened: what was typed, now at the stored
    revision, and the message naming what the stored version has otherwise, among the fields shown (of
    `names`, if given), and the arm and metric rows added since, so that the editor can look before saving
    over them rather than type everything again."""
    # Fields the form did not send are not shown on it (a key fixed once made), but for a box left unticked.
    shown = set(typed) | {name for name, value in stored.items() if value == "yes"}
    compared = {name for name in (shown & set(names) if names is not None else shown) if not _unused(name, typed, stored)}
    differ = [field_label(name) for name in sorted(compared)
              if name != "revision" and not name.endswith(".was") and _as_read(typed.get(name, "")) != _as_read(stored.get(name, ""))]
    if names is None:
        differ += [f"{field_label(row)} (added)" for row in sorted(_rows(stored) - _rows(typed))]
    which = f"the stored version differs from it in: {', '.join(differ)}" if differ else "it matches what is stored now"
    message = (f"It changed since this page was opened (in another tab, or by someone else). Nothing was saved. The form keeps what "
               f"you typed, and {which}. Save again to store the form as it is.")
    return {**typed, "revision": stored["revision"]}, message



def parse_json_field(raw: str) -> Any:
    """JSON typed into a form, parsed as the API parses bodies: nesting and numbers bounded, ValueError saying why.

    The standard library's parser recurses without bound and reads a 5,000-digit number only to
    fail converting it; neither may reach the page as a server error.
    """
    parsed = pydantic_core.from_json(raw, allow_inf_nan=False)
    repeated = repeated_name(raw)
    if repeated is not None:
        raise ValueError(repeated_message(repeated))
    return parsed


def _nesting(value: Any) -> int:
    """How many objects and arrays `value` holds one inside another, itself included (0 for a number or text)."""
    deepest, stack = 0, [(value, 1)]
    while stack:  # not recursive: the value may nest as deep as `parse_json_field` allows
        item, depth = stack.pop()
        inside = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if inside is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in inside)
    return deepest


Model = TypeVar("Model", bound=BaseModel)


def validated_whole(schema: type[Model], sent: dict[str, Any], boxes: Iterable[tuple[str, Any]]) -> Model:
    """`sent` checked by `schema` as the API checks a request body: as one JSON text.

    Each of the form's JSON boxes (`boxes`: its field's dotted name in `sent` and what it parsed to)
    was parsed on its own, so the whole can nest past the parser's bound where no box does. The box
    on the deepest path is then named, with its depth, instead of the parser's "line 1 column 1476".
    """
    try:
        return schema.model_validate_json(json.dumps(sent))
    except ValidationError as exc:
        if not any(e["type"] == "json_invalid" for e in exc.errors()):  # json.dumps wrote it: only its nesting can be at fault
            raise
        # A box named a.b.c sits inside as many levels of `sent` as its name has parts.
        deepest = _nesting(sent)
        depths = [(name, _nesting(value)) for name, value in boxes]
        found = [(name, depth) for name, depth in depths if depth + len(name.split(".")) == deepest]
        if not found:
            raise
        name, depth = found[0]
        raise Invalid.field(name, f"nests {depth} levels deep, too deep for the request it is part of (the API refuses a body that nests past about 190 levels in all)") from None


_INTEGER = re.compile(r"[+-]?[0-9]+")


def form_number(raw: str) -> Any:
    """An int or float; text that is neither (or not finite) stays text, for the schema to refuse under the field's name."""
    # Python's int() and float() also read other scripts' digits ("٣٠" as 30) and underscores ("1_0" as 10).
    if not raw.isascii() or "_" in raw:
        return raw
    if _INTEGER.fullmatch(raw):
        try:
            return int(raw)
        except ValueError:  # past Python's 4,300 digits
            return raw
    if raw.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return raw
    try:
        value = float(raw)
    except ValueError:
        return raw
    # "1e3" or "3.0" in a whole-number field is that number, as a browser's number input lets it be typed
    # (a float field takes the int as well).
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# The schema's own words for a key that breaks the key pattern, and what a person filling a form needs instead.
_KEY_PATTERN_MESSAGE = f"String should match pattern '{KEY_PATTERN.pattern}'"
_KEY_RULE = "use lower-case letters, digits, '.', '_' and '-' (starting with a letter or digit, up to 64 characters)"


# pydantic speaks of "Input" and "String"; a form's message sits beside the field it is about.
_WHOLE = {"String should have at least 1 character": "is required", "Field required": "is required",
          "Input should be a valid boolean, unable to interpret input": "must be on or off",
          "String should match pattern '^[^\\x00]*$'": "may not contain a NUL character"}
_OPENINGS = (("Input should be ", "must be "), ("String should have ", "must have "), ("Value error, ", ""))


def plain_words(message: str) -> str:
    """A schema message in the form's own words: 'must be greater than 0', not 'Input should be greater than 0'."""
    if message == _KEY_PATTERN_MESSAGE:
        return _KEY_RULE
    if message in _WHOLE:
        return _WHOLE[message]
    for opening, plain in _OPENINGS:
        if message.startswith(opening):
            return plain + message[len(opening):]
    return message


def errors_by_field(details: Iterable[Mapping[str, Any]], known: Collection[str] | None = None,
                    into: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Error details (the API's, or a schema's) in the form's words under the fields they name, added to `into` if given."""
    errors = into if into is not None else {}
    for d in details:
        # A query's field is named "query.cursor", a nested one "allocation.b": the form shows one input for either.
        name = str(d["field"]).removeprefix("query.").split(".")[0] or "form"
        errors.setdefault(name if known is None or name in known else "form", []).append(plain_words(d["message"]))
    return errors
