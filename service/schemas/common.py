"""Shared field types and the error body."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

# NUL is refused everywhere: PostgreSQL cannot store it in text.
Id = Annotated[str, StringConstraints(pattern=r"^[^\x00]{1,128}$")]
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Timestamp = AwareDatetime
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Input(BaseModel):
    """Request bodies: unknown fields and type coercion are refused, so typos surface."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """Query strings: values arrive as text, so numbers are parsed from it."""

    model_config = ConfigDict(extra="ignore")


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


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC timestamp."""
    if epoch is None:
        return None
    text = datetime.utcfromtimestamp(epoch).isoformat(timespec="microseconds")
    return text.rstrip("0").rstrip(".") + "Z" if "." in text else text + "Z"
