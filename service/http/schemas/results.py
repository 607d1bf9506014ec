"""Results for analysts: query parameters and answers."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from service.http.schemas.common import MAX_MAGNITUDE, Key, Output, Query


class ResultsQuery(Query):
    """Which metric, at which level, with which correction; `mde` adds a sample-size estimate."""

    metric: Key | None = None
    alpha: float = Field(default=0.05, gt=0, lt=1, allow_inf_nan=False)
    correction: Literal["holm", "bh", "none"] = "holm"
    mde: float | None = Field(default=None, gt=0, le=MAX_MAGNITUDE, allow_inf_nan=False)
    power: float = Field(default=0.8, gt=0, lt=1, allow_inf_nan=False)


class ArmResultOut(Output):
    """One arm; comparison fields are null for the control."""

    arm: str
    users: int
    total: float
    mean: float | None
    ci: list[float] | None
    diff: float | None
    diff_ci: list[float] | None
    lift: float | None
    lift_ci: list[float] | None
    p_value: float | None
    p_value_adjusted: float | None
    significant: bool | None
    chance_to_beat_control: float | None
    notes: list[str] = []
    ipw_mean: float | None = None


class SrmOut(Output):
    """Chi-square of exposures against the weights."""

    p_value: float
    observed: list[int]
    expected: list[float]
    mismatch: bool
    statistic: float | None = Field(description="null when infinite: an arm expected to get no one got someone")


class ResultsOut(Output):
    """Every arm against the control on one metric."""

    experiment: str
    status: str
    type: str
    metric: str
    metric_kind: str
    metric_source: str
    alpha: float
    test: str
    correction: str
    control: str
    arms: list[ArmResultOut]
    srm: SrmOut | None
    computed_at: str
    notes: list[str]
    allocation: dict[str, float] | None = None
    safe_to_compare: list[str] | None = None
    sample_size: dict[str, Any] | None = None


class DailyQuery(Query):
    """Which metric (default: the primary one)."""

    metric: Key | None = None


class DailyArm(Output):
    """Cumulative figures of one arm at the end of a day."""

    arm: str
    users: int
    total: float
    mean: float | None


class DailyPoint(Output):
    """One UTC day."""

    date: str
    arms: list[DailyArm]


class DailyOut(Output):
    """Per-day cumulative users and means, for plotting."""

    experiment: str
    metric: str
    metric_kind: str
    days: list[DailyPoint]


class RetentionQuery(Query):
    """How many days after exposure, at which level."""

    days: int = Field(default=30, ge=1, le=365)
    alpha: float = Field(default=0.05, gt=0, lt=1, allow_inf_nan=False)


class RetentionDay(Output):
    """Day k after exposure: users whose day k has ended, how many were active, the rate with its Wilson interval."""

    day: int
    eligible: int
    active: int
    rate: float | None
    ci: list[float] | None


class RetentionArm(Output):
    """One arm's curve."""

    arm: str
    days: list[RetentionDay]


class RetentionOut(Output):
    """The stickiness curve of each arm."""

    experiment: str
    alpha: float
    computed_at: str
    arms: list[RetentionArm]
