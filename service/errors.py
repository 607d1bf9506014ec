"""Errors the use cases and the store raise; only the HTTP layer turns them into status codes."""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Something the caller can act on; `details` name the fields at fault."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class NotFound(ServiceError):
    """A named resource does not exist."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} does not exist")


class Conflict(ServiceError):
    """The request does not fit the resource's current state."""


class ChangedMeanwhile(Conflict):
    """The resource has moved past the revision the caller's change was made against."""


class Invalid(ServiceError):
    """Input that passed the schema but not the domain's rules."""

    @classmethod
    def field(cls, name: str, message: str, index: int | None = None) -> "Invalid":
        """One bad field, named in the message and in the details."""
        return cls(f"{name}: {message}", [detail(name, message, index)])

    @classmethod
    def many(cls, details: list[dict[str, Any]]) -> "Invalid":
        """Several bad fields; the message names the first and counts the rest."""
        first = details[0]
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        return cls(f"{first['field']}: {first['message']}{more}", details)


class Unavailable(ServiceError):
    """A dependency (the database) cannot be reached."""


class Busy(Unavailable):
    """The database answers, but other work holds what a change needs for longer than it waits; the message names no host."""


class HostCannot(Unavailable):
    """What an operator must put right before this can be done (the model folder read-only or full, no
    process to be had, a database without this release's tables): the message says what, naming no host."""


def detail(field: str, message: str, index: int | None = None) -> dict[str, Any]:
    """One entry of an error's details."""
    out: dict[str, Any] = {"field": field, "message": message}
    if index is not None:
        out["index"] = index
    return out
