"""Shared field types, the request base classes and the error body."""
from __future__ import annotations

import math
import re
import sys
from datetime import datetime, timezone
from types import UnionType
from typing import Annotated, Any, ClassVar, Iterator, Union, get_args, get_origin

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints, ValidationInfo, field_validator

from experiments.definitions import KEY_PATTERN
from service.timestamps import EARLIEST, HORIZON_YEARS, window_error

MAX_BATCH = 10_000
# Every number a client sends stays within this magnitude unless its field says otherwise,
# so that sums, sums of squares and their products stay finite in every aggregate.
MAX_MAGNITUDE = 1e12
# The least significance level accepted: far smaller ones make the quantiles, and with them
# the intervals, infinite; no analysis needs one below it.
MIN_ALPHA = 1e-12

# NUL is refused everywhere: PostgreSQL cannot store it in text.
ID_PATTERN = r"^[^\x00]{1,128}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN.pattern)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
PositiveFloat = Annotated[float, Field(gt=0, le=MAX_MAGNITUDE, allow_inf_nan=False)]


def _epoch_in_window(value: datetime) -> float:
    epoch = value.timestamp()
    problem = window_error(epoch)
    if problem is not None:
        raise ValueError(problem)
    return epoch


def _in_window(value: datetime) -> datetime:
    _epoch_in_window(value)
    return value


# pydantic would also read epoch seconds, as a number or in a string, as a time: the contract's
# timestamps are ISO 8601 text (the zone is checked by AwareDatetime).
# Extended form only (RFC 3339's, with seconds optional, a comma or a point before their fraction, and an offset of whole hours): the
# basic form, ordinal and week dates are ISO 8601 too, and are named as unread rather than failing deep in the parser.
_ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ](\d{2}):\d{2}(?::(\d{2})(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?")


def _iso_text(value: Any) -> Any:
    found = _ISO_8601.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError("must be an ISO 8601 timestamp in extended form with a zone, e.g. 2026-11-22T10:00:00Z or 2026-11-22T12:00:00+02:00")
    # Valid ISO 8601 that no datetime holds: said plainly, not as "unexpected extra characters".
    if found.group(1) == "24":
        raise ValueError("24:00 is not accepted: send 00:00 of the next day")
    if found.group(2) == "60":
        raise ValueError("a leap second (:60) is not accepted: send :59.999 or the next minute's :00")
    # An offset of whole hours may be written +02 (ISO 8601, and how PostgreSQL writes one), which the parser
    # below reads only as +02:00.
    if value[-3] in "+-" and value[-2:].isdigit():
        return value + ":00"
    return value


# ISO 8601 with a zone, from 2000-01-01T00:00:00Z to 100 years after the server's now. The window is in
# the schema too, in keywords of this service's own: JSON Schema has none for a range of times.
_WINDOW = Field(json_schema_extra={"x-formatMinimum": datetime.fromtimestamp(EARLIEST, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                   "x-maxYearsAhead": HORIZON_YEARS})
# Lax once the text is known to be ISO 8601: strict bodies would refuse text for a datetime after a before-validator.
Timestamp = Annotated[AwareDatetime, Strict(False), BeforeValidator(_iso_text), AfterValidator(_in_window), _WINDOW]
# The same on the wire, read straight to epoch seconds: a 10,000-event batch skips as many datetimes.
EpochTimestamp = Annotated[AwareDatetime, Strict(False), BeforeValidator(_iso_text), AfterValidator(_epoch_in_window), _WINDOW]


def _whole(value: Any) -> Any:
    # JSON has one kind of number: 5.0 is the integer 5 to JSON Schema, and what a client that holds
    # numbers as doubles may write. Any other float stays one, for the strict check to refuse.
    return int(value) if type(value) is float and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


_LARGEST_DOUBLE = int(sys.float_info.max)


def _nodes(value: Any) -> Iterator[Any]:
    """Every value inside nested JSON objects and arrays, arrays and objects too (not `value` itself)."""
    pending = list(value.values()) if isinstance(value, dict) else [value]
    while pending:
        item = pending.pop()
        yield item
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


# Values in one stored free-form object: an item's 16 million zeros (a 32 MB body) had cost a worker
# a gigabyte while validated and stored, and every read of the item 50 MB.
MAX_JSON_VALUES = 10_000


def _check_numbers(value: Any, doubles: bool, most: int | None = None) -> Any:
    """Free-form JSON with no NaN or Infinity inside (stored, they came back as null) and, with `doubles`,
    no integer a double cannot hold: 10**400 is valid JSON, but JavaScript's JSON.parse, and every client
    that reads numbers as doubles, reads it as Infinity, as it would 1e400, which is refused. With `most`,
    no more values than that, arrays and objects counted too (a million empty arrays cost more memory
    than a million zeros)."""
    for count, item in enumerate(_nodes(value), 1):
        if most is not None and count > most:
            raise ValueError(f"holds more than {most:,} values; keep bulk data out of attributes and payloads")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite: NaN and Infinity are not JSON")
        if doubles and isinstance(item, int) and not isinstance(item, bool) and abs(item) > _LARGEST_DOUBLE:
            raise ValueError("numbers must be finite: an integer this large reads as Infinity wherever numbers are doubles")
    return value


# Attributes, payloads and settings. A setting (a model's params, a targeting rule) is read by a
# validator of its own, which refuses an integer beyond a double naming the setting's own field.
JsonObject = Annotated[dict[str, Any], AfterValidator(lambda value: _check_numbers(value, doubles=False))]
# Stored as sent and handed back to storefronts (item attributes, arm payloads), so bounded in size
# too; settings and targeting rules have bounds of their own.
StoredJsonObject = Annotated[dict[str, Any], AfterValidator(lambda value: _check_numbers(value, doubles=True, most=MAX_JSON_VALUES))]


class Input(BaseModel):
    """Request bodies: unknown fields and type coercion are refused, so typos surface."""

    model_config = ConfigDict(extra="forbid", strict=True)


# How a number is written in a query string. pydantic would also read "5_0" as 50 and " 5" as 5;
# "10.0", which a client's str() of a float gives, is the whole number it reads as.
_QUERY_INTEGER = re.compile(r"-?[0-9]+(\.0*)?")
# Unambiguous: with two runs that may share digits ([0-9]+\.?[0-9]*), a long run of digits that fails
# at its end was tried split every way, seconds of CPU for one 8 kB query string.
_QUERY_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _number_kind(annotation: Any) -> type | None:
    """int or float when a field holds that kind of number (or null), else None."""
    kinds = set(get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else {annotation}
    return next((k for k in (int, float) if k in kinds), None)


class Query(BaseModel):
    """Query strings: values arrive as text, so numbers are parsed from it; unknown parameters are refused.
    Frozen: a worker hands the same parsed query to every request that sends the same string."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # False where the string names a user, so each is seen about once: remembering those would only push out the rest.
    recurs: ClassVar[bool] = True

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        kind = _number_kind(cls.model_fields[info.field_name].annotation) if info.field_name else None
        if isinstance(value, str) and kind is not None and not (_QUERY_INTEGER if kind is int else _QUERY_NUMBER).fullmatch(value):
            raise ValueError("must be a whole number written in digits" if kind is int else "must be a number written in digits, such as 0.05 or 1e-3")
        return value


class Output(BaseModel):
    """Response bodies."""

    model_config = ConfigDict()


class ErrorInfo(Output):
    """The error object."""

    code: str
    message: str
    details: list[Any] = []
    request_id: str | None = None


class ErrorBody(Output):
    """Every error answer has this shape."""

    error: ErrorInfo
