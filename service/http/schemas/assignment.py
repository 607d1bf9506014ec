"""Assignment: which arm a user is in, for one experiment or many."""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, StringConstraints

from service.http.schemas.common import FiniteFloat, Id, Input, Key, Output, Query, Timestamp


class AssignmentQuery(Query):
    """Who is asking, and optionally when the exposure happened (default now)."""

    recurs: ClassVar[bool] = False
    user_id: Id
    timestamp: Timestamp | None = Field(
        default=None,
        description="when the storefront showed the arm, for an exposure logged late (default: now); stored as given, also before "
        "the experiment's start or ahead of the server's clock, so the user's events from then on count as after exposure",
    )


# Why a user is not enrolled: the assignment's answer, and a recommendation request's with ?experiment=.
NotEnrolled = Literal["traffic", "not_running", "layer", "targeting"]


class AssignmentOut(Output):
    """A user's arm, or why they are not enrolled."""

    experiment: str
    user_id: str
    enrolled: bool
    arm: str | None
    payload: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    probability: float | None = None
    reason: NotEnrolled | None = None
    exposed_at: str | None = None


AttributeName = Annotated[str, StringConstraints(pattern=r"^[^\x00]{1,128}$")]
AttributeValue = Union[bool, FiniteFloat, Annotated[str, StringConstraints(pattern=r"^[^\x00]{0,1000}$")]]


class AssignmentsIn(Input):
    """One user, many experiments, and attributes for targeting rules."""

    user_id: Id
    experiments: list[Key] = Field(min_length=1, max_length=100)
    timestamp: Timestamp | None = None
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict, max_length=50,
        description="what targeting rules read besides the built-in attributes: at most 50, names of 1 to 128 characters, values strings of at most 1,000 characters, numbers at most 1e12 in magnitude, or booleans",
    )


class AssignmentsOut(Output):
    """One answer per experiment, in the order asked."""

    assignments: list[AssignmentOut]
