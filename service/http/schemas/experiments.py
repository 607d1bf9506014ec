"""Experiments and their reward schedules."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, create_model, field_validator

from bandits.registry import POLICIES
from experiments.definitions import (
    BUILTIN_METRICS, CUPED_DAYS_RANGE, DESIGN_FIELDS, MAX_ATTRIBUTION_HOURS, SEQUENTIAL_TUNING_RANGE, AnalysisSettings, BanditSettings, ExperimentType,
    MetricKind, Status,
)
from experiments.schedules import SCHEDULES, Schedule
from service.http.schemas.common import Input, JsonObject, Key, Output, PositiveFloat, Query, StoredJsonObject, Text, Timestamp, WholeNumber



class MultiplierIn(Input):
    """Points times `factor` for actions in [start, end)."""

    factor: PositiveFloat
    start: Timestamp
    end: Timestamp


class _ScheduleBase(Input):
    action: Key = "purchase"
    multiplier: MultiplierIn | None = None


def _schedule_model(cls: type[Schedule]) -> type[Input]:
    """The request schema of one schedule type, from the bounds its dataclass declares."""
    fields: dict[str, Any] = {"type": (Literal[cls.type], ...)}  # type: ignore[valid-type]
    for f in cls.parameters():
        meta = f.metadata
        bounds = {k: meta[k] for k in ("gt", "ge", "le") if meta[k] is not None}
        # The bounds as the field's own, not in an Annotated around WholeNumber: there pydantic still checks
        # them but writes them into the schema as "ge" and "le", which no JSON Schema reader knows.
        if meta["integer"]:
            fields[f.name] = (WholeNumber, Field(..., description=meta["doc"], **bounds))
        else:
            fields[f.name] = (float, Field(..., allow_inf_nan=False, description=meta["doc"], **bounds))
    name = "".join(part.title() for part in cls.type.split("_")) + "In"
    return create_model(name, __base__=_ScheduleBase, __doc__=cls.__doc__, **fields)  # type: ignore[no-any-return, call-overload]


# One request schema per registered schedule type: adding a type to SCHEDULES adds it here.
SCHEDULE_MODELS = tuple(_schedule_model(cls) for cls in SCHEDULES.values())
ScheduleIn = Annotated[Union[SCHEDULE_MODELS], Field(discriminator="type")]  # type: ignore[valid-type]
if TYPE_CHECKING:
    BanditAlgorithm = str
else:  # the registry's names, so that a new policy needs no change here
    BanditAlgorithm = Literal[tuple(POLICIES)]


class ArmIn(Input):
    """One arm; the first arm of an experiment is its control."""

    key: Key
    weight: PositiveFloat = 1.0
    payload: StoredJsonObject = Field(default_factory=dict, description="free-form JSON handed to the storefront with the arm, at most 10,000 values")
    schedule: ScheduleIn | None = None


class MetricIn(Input):
    """A metric reported through /v1/outcomes; the built-in event metrics need no declaring."""

    key: Key
    kind: MetricKind = "binary"
    higher_is_better: bool = Field(
        default=True,
        description="false for a metric that gets worse as it rises (complaints, refunds): a guardrail on it fails when the difference lies wholly above 0; a bandit's primary metric must be true",
    )


class BanditIn(Input):
    """The bandit policy and the least probability every arm keeps."""

    algorithm: BanditAlgorithm = BanditSettings.algorithm
    epsilon: float = Field(default=BanditSettings.epsilon, ge=0, le=1, allow_inf_nan=False)
    min_probability: float = Field(default=BanditSettings.min_probability, ge=0, lt=1, allow_inf_nan=False)
    attribution_hours: float | None = Field(
        default=BanditSettings.attribution_hours, gt=0, le=MAX_ATTRIBUTION_HOURS, allow_inf_nan=False,
        description="count a pull once its outcome arrived or this many hours passed since exposure; at exposure when null",
    )


class AnalysisIn(Input):
    """How results are computed unless a request overrides it."""

    sequential: bool = Field(default=AnalysisSettings.sequential, description="always-valid confidence sequences, safe to check every day")
    sequential_tuning: float = Field(
        default=AnalysisSettings.sequential_tuning, ge=SEQUENTIAL_TUNING_RANGE[0], le=SEQUENTIAL_TUNING_RANGE[1], allow_inf_nan=False,
        description="the sample size the sequences are tightest at",
    )
    cuped: bool = Field(default=AnalysisSettings.cuped, description="variance reduction from each user's behaviour before exposure (event-derived metrics)")
    cuped_days: WholeNumber = Field(default=AnalysisSettings.cuped_days, ge=CUPED_DAYS_RANGE[0], le=CUPED_DAYS_RANGE[1])


PRIMARY_METRIC = (
    "the metric the test decides on: one of `metrics` or a built-in (" + ", ".join(f"`{m}`" for m in BUILTIN_METRICS) + "); "
    "a bandit's must be one of `metrics`, since it learns from reported outcomes; left out, the first of `metrics`, and required when `metrics` is empty"
)


class ExperimentIn(Input):
    """A new experiment (created as draft)."""

    key: Key
    name: Text = Field(min_length=1, max_length=256)
    description: Text = Field(default="", max_length=10_000)
    type: ExperimentType = "ab"
    traffic: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
    arms: list[ArmIn] = Field(min_length=2, max_length=50)
    metrics: list[MetricIn] = Field(default_factory=list, max_length=50)
    primary_metric: Key | None = Field(default=None, description=PRIMARY_METRIC)
    bandit: BanditIn | None = None
    layer: Key | None = Field(default=None, description="a layer shared with other experiments: a user is in at most one of them")
    analysis: AnalysisIn | None = None
    guardrails: list[Key] = Field(default_factory=list, max_length=20, json_schema_extra={"uniqueItems": True}, description="metrics that must not get worse: lower for most, higher for a metric declared with higher_is_better false")
    targeting: JsonObject | None = Field(default=None, description='{"all" | "any": [{"attribute", "op", "value"} | group]}, at most 3 groups deep')


# The fields a PATCH may leave out but not set to null; `bandit`, `layer` and `targeting` take null to drop them.
_NOT_NULL = ("name", "description", "type", "traffic", "arms", "metrics", "primary_metric", "analysis", "guardrails")

_PATCH_DESCRIPTION = (
    "Fields to change. " + ", ".join(f"`{f}`" for f in sorted(DESIGN_FIELDS)) + " can change only while the experiment is a "
    "draft (409 otherwise; one sent as it reads is no change), and `traffic` of a layered experiment too; `analysis` and `guardrails` only until the experiment stops (409 after: "
    "the reading a decision rested on stays as it was; `/results` reads it another way per request). A field left out keeps its value; `bandit`, `layer` and `targeting` may be "
    "set to null (to drop them). An object sent (`analysis`, `bandit`) replaces the stored one whole: its fields left out take their defaults. "
    "A change that leaves every field as it reads (defaults filled in) is no change: the revision and `updated_at` stay."
)


def _patch_schema(schema: dict[str, Any]) -> None:
    """The patch's schema as the server reads it: no field has a default, since one left out keeps its value
    (a client that filled in a null default would drop a layer); a field that refuses null is typed without it."""
    schema["description"] = _PATCH_DESCRIPTION
    for name, field in schema["properties"].items():
        field.pop("default")
        if name in _NOT_NULL:
            (kept,) = [option for option in field.pop("anyOf") if option != {"type": "null"}]
            field.update(kept)


class ExperimentPatch(Input):
    """Fields to change; the design fields only while draft (see below).

    A field left out keeps its value; `bandit`, `layer` and `targeting` may be set to null (to drop them).
    An object sent (`analysis`, `bandit`) replaces the stored one whole: its fields left out take their defaults.
    """

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    name: Text | None = Field(default=None, min_length=1, max_length=256)
    description: Text | None = Field(default=None, max_length=10_000)
    type: ExperimentType | None = None
    traffic: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    arms: list[ArmIn] | None = Field(default=None, min_length=2, max_length=50)
    metrics: list[MetricIn] | None = Field(default=None, max_length=50)
    primary_metric: Key | None = None
    bandit: BanditIn | None = None
    layer: Key | None = None
    targeting: JsonObject | None = None
    analysis: AnalysisIn | None = None
    guardrails: list[Key] | None = Field(default=None, max_length=20, json_schema_extra={"uniqueItems": True})

    # After, not before: a before-validator would make pydantic check the field in strict Python
    # mode, which refuses the ISO timestamps JSON carries (in a multiplier window, for instance).
    @field_validator(*_NOT_NULL, mode="after")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class ExperimentOut(Output):
    """A stored experiment."""

    key: str
    name: str
    description: str
    type: str
    status: str
    traffic: float
    arms: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    primary_metric: str
    bandit: dict[str, Any] | None
    revision: int = Field(description="goes up by one with every change of the definition or status: compare it to see whether the experiment changed since it was read")
    created_at: str
    updated_at: str
    started_at: str | None
    stopped_at: str | None
    layer: str | None = None
    targeting: dict[str, Any] | None = None
    layer_range: dict[str, float] | None = None
    analysis: dict[str, Any] = {}
    guardrails: list[str] = []


class ExperimentList(Output):
    """Experiments, newest first."""

    experiments: list[ExperimentOut]


class ExperimentFilter(Query):
    """Optional status filter."""

    status: Status | None = None
