"""Items, events, models and recommendations."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, field_validator, with_config
from typing_extensions import NotRequired, TypedDict

from recommender.matrix import EVENT_TYPES
from recommender.models import ALGORITHMS, DEFAULT_ALGORITHM
from recommender.tuning import MAX_TRIALS, Metric, TuneSettings
from service.http.schemas.common import MAX_BATCH, EpochTimestamp, FiniteFloat, Id, Input, JsonObject, Key, Output, Query, StoredJsonObject, Text, WholeNumber
from service.http.schemas.assignment import NotEnrolled

if TYPE_CHECKING:
    EventType = str
    Algorithm = str
else:  # the registries' names, so that a new event type or algorithm needs no change here
    EventType = Literal[EVENT_TYPES]
    Algorithm = Literal[tuple(ALGORITHMS)]


class ItemIn(Input):
    """One catalogue entry; fields left out or sent as null keep their stored values (a new item: no title or category, available, no attributes); "" clears a title or a category, {} the attributes."""

    item_id: Id
    title: Text | None = Field(default=None, max_length=512)
    category: Text | None = Field(default=None, max_length=128)
    available: bool | None = None
    attributes: StoredJsonObject | None = Field(default=None, description="free-form JSON, handed back as sent; at most 10,000 values")


class ItemBatch(Input):
    """Up to 10,000 items."""

    items: list[ItemIn] = Field(max_length=MAX_BATCH)


class Upserted(Output):
    """How many distinct items were written."""

    upserted: int


class ItemOut(Output):
    """A stored item."""

    item_id: str
    title: str | None
    category: str | None
    available: bool
    attributes: dict[str, Any]
    updated_at: str


# A TypedDict, not a model: validation hands the view plain dicts, which halves a batch's
# parsing (5.8 against 10.7 us an event), the larger part of ingestion's own CPU.
@with_config(ConfigDict(extra="forbid", strict=True))
class EventIn(TypedDict):
    """One behaviour event; `event_id` makes it idempotent."""

    event_id: Id
    user_id: Id
    item_id: Id
    type: EventType
    timestamp: NotRequired[EpochTimestamp | None]
    value: NotRequired[FiniteFloat | None]


class EventBatch(Input):
    """Up to 10,000 events, stored all or nothing."""

    events: list[EventIn] = Field(max_length=MAX_BATCH)


class EventsAccepted(Output):
    """Exact counts: new events and replays."""

    accepted: int
    duplicates: int


class TuneRequest(Input):
    """A seeded search for the model's parameters before the final fit."""

    trials: WholeNumber = Field(default=TuneSettings.trials, ge=1, le=MAX_TRIALS, description="candidate parameter sets, each fitted and scored on one holdout split")
    metric: Metric = Field(default=TuneSettings.metric, description="what the search maximises on that split")
    space: JsonObject = Field(
        default_factory=dict,
        description='ranges that replace the algorithm\'s default ones, per parameter: [low, high], [low, high, "log"] or {"choices": [...]}',
    )
    seed: WholeNumber = Field(default=TuneSettings.seed, ge=0, le=2**32 - 1, description="seeds the sampler and the tuning split")


class TrainRequest(Input):
    """What to train; everything is optional."""

    algorithm: Algorithm = DEFAULT_ALGORITHM
    params: JsonObject = Field(default_factory=dict, description="the model's own parameters (factors, regularization, ...)")
    matrix: JsonObject = Field(default_factory=dict, description="how events become confidence: weights, half_life_days, scaling, alpha, epsilon")
    evaluation: JsonObject = Field(default_factory=dict, description="the holdout evaluation: evaluate, test_fraction, eval_users, seed")
    activate: bool = Field(
        default=True,
        description="serve it from every worker once ready, unless another version is activated while it trains (a rollback stands; `data.activation` then says why it was not)",
    )
    tune: TuneRequest | None = Field(default=None, description="search for the parameters first; `params` then fixes the ones not searched")


class TrainAccepted(Output):
    """A training run that has started."""

    version: str
    status: str


class TrialOut(Output):
    """One tuning trial: the parameters fitted, their score and the seconds it took."""

    params: dict[str, Any]
    metric: float
    seconds: float


class ModelOut(Output):
    """A model version."""

    version: str
    status: Literal["training", "ready", "failed"]
    cancelled: bool = Field(default=False, description="the run was cancelled (`POST /v1/models/{version}/cancel`); its status is then `failed`")
    algorithm: str
    params: dict[str, Any]
    matrix: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    metrics: dict[str, Any]
    data: dict[str, Any]
    error: str | None
    created_at: str
    finished_at: str | None
    training_seconds: float | None
    active: bool
    tune: dict[str, Any] | None = Field(default=None, description="the tuning settings of a tuned run")
    tuning: list[TrialOut] | None = Field(default=None, description="a tuned run's trials so far, in order; `data.progress` counts them")


class ModelList(Output):
    """Every version, newest first."""

    models: list[ModelOut]
    active_version: str | None


# The server reads request lines of at most 8,190 bytes (gunicorn's ceiling). Even with every
# byte percent-encoded (3 bytes each) and user_id and category at 128 four-byte characters,
# an `exclude` of this many UTF-8 bytes keeps the line within it.
MAX_EXCLUDE_BYTES = 1_500


class RecommendQuery(Query):
    """Top-n filters; `experiment` assigns the user and answers from their arm's recommender."""

    n: int = Field(default=10, ge=1, le=100)
    category: Text | None = Field(default=None, min_length=1, max_length=128)
    # No max_length: JSON Schema's counts characters, and the bound is on bytes.
    exclude: Text | None = Field(
        default=None,
        json_schema_extra={"x-maxBytes": MAX_EXCLUDE_BYTES},
        description=f"comma-separated item ids, at most {MAX_EXCLUDE_BYTES:,} bytes of UTF-8 in all",
    )
    experiment: Key | None = Field(default=None, description="assign the user in this experiment and answer from their arm's recommender")

    @field_validator("exclude")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if len(value.encode()) > MAX_EXCLUDE_BYTES:
            raise ValueError(f"at most {MAX_EXCLUDE_BYTES:,} bytes of UTF-8, so that the request line fits the server's limit")
        if any(len(part) > 128 for part in value.split(",")):
            raise ValueError("each excluded id is at most 128 characters")
        return value

    def excluded(self) -> set[str]:
        """The excluded item ids."""
        return {p for p in (self.exclude or "").split(",") if p}


class PopularQuery(Query):
    """Top-n popular, optionally in one category."""

    n: int = Field(default=10, ge=1, le=100)
    category: Text | None = Field(default=None, min_length=1, max_length=128)


class SimilarQuery(Query):
    """Top-n similar."""

    n: int = Field(default=10, ge=1, le=100)


class ScoredItem(Output):
    """An item and its score; higher is better."""

    item_id: str
    score: float


class Recommendations(Output):
    """A user's list; with ?experiment=, which experiment and arm answered (arm null when not enrolled)."""

    user_id: str
    strategy: Literal["personalized", "popular"]
    model_version: str | None
    items: list[ScoredItem]
    experiment: str | None = None
    arm: str | None = None
    reason: NotEnrolled | None = Field(default=None, description="with ?experiment=, why the user is not enrolled, as the assignment endpoint says it; the active model then answered")


class SimilarItems(Output):
    """Items like one item."""

    item_id: str
    strategy: Literal["similar", "popular"] = Field(description="popular: the model does not know the item, so its category's popular items")
    model_version: str | None
    items: list[ScoredItem]


class PopularItems(Output):
    """The most popular items."""

    model_version: str | None
    items: list[ScoredItem]
