"""Results for analysts: query parameters and answers."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from experiments.definitions import SEQUENTIAL_TUNING_RANGE, MetricKind
from experiments.stats.corrections import Correction
from experiments.stats.power import PLAN_DEFAULTS, MdeType, PlanCorrection
from service.http.schemas.common import MAX_MAGNITUDE, MIN_ALPHA, Input, Key, Output, Query, WholeNumber
from service.usecases.results import GuardrailStatus, ResultsRequest


class ResultsQuery(Query):
    """Which metric, at which level, with which correction; `mde` adds a sample-size estimate."""

    metric: Key | None = None
    alpha: float = Field(default=ResultsRequest.alpha, ge=MIN_ALPHA, lt=1, allow_inf_nan=False)
    correction: Correction = ResultsRequest.correction
    mde: float | None = Field(default=None, gt=0, le=MAX_MAGNITUDE, allow_inf_nan=False)
    mde_type: MdeType = ResultsRequest.mde_type
    power: float = Field(default=ResultsRequest.power, gt=0, lt=1, allow_inf_nan=False)
    sequential: bool | None = Field(default=None, description="override the experiment's analysis.sequential")
    sequential_tuning: float | None = Field(default=None, ge=SEQUENTIAL_TUNING_RANGE[0], le=SEQUENTIAL_TUNING_RANGE[1], allow_inf_nan=False)
    cuped: bool | None = Field(default=None, description="override the experiment's analysis.cuped")


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
    ipw_ci: list[float] | None = None
    snipw_mean: float | None = None
    snipw_ci: list[float] | None = None
    ipw_effective_users: float | None = Field(
        default=None,
        description="bandits: Kish's effective sample size of the arm's weights 1/p, (sum w)^2 / sum w^2; under 60, a note warns that the weighted intervals are likely too narrow",
    )
    points_per_user: float | None = None
    reward_actions: int | None = Field(
        default=None,
        description="actions recorded through POST /v1/rewards for the arm's users while the experiment ran; while an arm with a schedule has none, "
        "its points figures count nothing (its notes say so)",
    )
    cost_per_incremental: float | None = Field(
        default=None, description="(points_per_user - the control's) / diff; null for the control and when diff <= 0",
    )


class CupedOut(Output):
    """The CUPED adjustment applied: theta, the pre-exposure window and the share of variance removed."""

    theta: float | None
    days: int
    variance_reduction: float | None


class SequentialOut(Output):
    """The confidence sequences' tuning (the sample size they are tightest at)."""

    tuning: float


class GuardrailOut(Output):
    """One treatment arm on one guardrail metric."""

    arm: str
    metric: str
    diff: float | None
    diff_ci: list[float] | None
    status: GuardrailStatus
    higher_is_better: bool = Field(description="false when a rise is what makes this metric worse: then `fail` means diff_ci lies wholly above 0 and `warn` that diff > 0")
    note: str | None = Field(
        description="why there is no difference or no interval yet (then `ok` rests on no evidence), or that a binary metric's status rests on "
        "fewer than 5 conversions or non-conversions in an arm; null otherwise"
    )


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
    metric_source: str = Field(description="outcomes (reported through POST /v1/outcomes) or events (a built-in metric)")
    higher_is_better: bool = Field(
        description="false for a metric declared lower-is-better (complaints, refunds): an arm is then better when its diff is below 0, "
        "and chance_to_beat_control, the chance of exceeding the control, is the chance of being worse"
    )
    alpha: float
    test: str = Field(description="two_proportion_z (binary) or welch_t (continuous), with _cuped when CUPED adjusted the figures and _sequential when the intervals are always valid")
    correction: str
    control: str
    arms: list[ArmResultOut]
    srm: SrmOut | None
    computed_at: str
    notes: list[str]
    sequential: SequentialOut | None = None
    cuped: CupedOut | None = None
    guardrails: list[GuardrailOut] = []
    allocation: dict[str, float] | None = None
    safe_to_compare: list[str] | None = None
    sample_size: dict[str, Any] | None = None


class DailyQuery(Query):
    """Which metric (default: the primary one), and the level of the differences' confidence sequences."""

    metric: Key | None = None
    alpha: float = Field(default=0.05, ge=MIN_ALPHA, lt=1, allow_inf_nan=False)


class DailyArm(Output):
    """Cumulative figures of one arm at the end of a day."""

    arm: str
    users: int
    total: float
    mean: float | None
    diff: float | None = Field(default=None, description="mean minus the control's; null for the control and while either has no users")
    diff_ci: list[float] | None = Field(default=None, description="for a rate, the difference's confidence sequence at level 1 - alpha: it covers "
                                        "the true difference on every day at once, so it may be watched daily (the same as /results?sequential=true"
                                        "&cuped=false on the last day); null for a mean, the control, or without variation")


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
    alpha: float = Field(default=0.05, ge=MIN_ALPHA, lt=1, allow_inf_nan=False)


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


class PlanIn(Input):
    """A sample-size question before launch."""

    metric_kind: MetricKind
    baseline: float = Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, description="the control's rate (binary) or mean (continuous)")
    sd: float | None = Field(default=None, gt=0, le=MAX_MAGNITUDE, allow_inf_nan=False, description="standard deviation per user (continuous)")
    mde: float = Field(gt=0, le=MAX_MAGNITUDE, allow_inf_nan=False)
    mde_type: MdeType = PLAN_DEFAULTS["mde_type"]
    alpha: float = Field(default=PLAN_DEFAULTS["alpha"], ge=MIN_ALPHA, lt=1, allow_inf_nan=False)
    power: float = Field(default=PLAN_DEFAULTS["power"], gt=0, lt=1, allow_inf_nan=False)
    arms: WholeNumber = Field(default=PLAN_DEFAULTS["arms"], ge=2, le=50)
    correction: PlanCorrection = PLAN_DEFAULTS["correction"]
    daily_users: float | None = Field(default=None, gt=0, le=MAX_MAGNITUDE, allow_inf_nan=False)


class SequentialPlan(Output):
    """The same test's size when its results are read with sequential intervals, safe to check at every look."""

    users_per_arm: int = Field(description="users per arm for the sequence to find the mde at that size with the power asked (or sooner)")
    total_users: int
    days: int | None
    tuning: float = Field(description="the sequential_tuning it is sized for: the experiments' default")


class PlanOut(Output):
    """Users per arm, in total, and days at the given daily traffic."""

    users_per_arm: int
    total_users: int
    days: int | None
    alpha_per_test: float
    note: str | None = None
    sequential: SequentialPlan | None = Field(default=None, description="the size read with sequential intervals; null where no population could supply it")


class EvaluateIn(Input):
    """A different allocation to value from the logged assignments: shares per arm, or the best arm."""

    allocation: dict[Key, Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] | Literal["best_arm"]
    metric: Key | None = None
    alpha: float = Field(default=0.05, ge=MIN_ALPHA, lt=1, allow_inf_nan=False)


class Estimate(Output):
    """A value and its interval."""

    value: float | None
    ci: list[float] | None


class EvaluateOut(Output):
    """The allocation's estimated value per exposed user."""

    experiment: str
    metric: str
    allocation: dict[str, float]
    ipw: Estimate
    snipw: Estimate
    effective_sample_size: float | None
    users: int
    as_run: float | None = Field(default=None, description="the metric per exposed user under the allocation the experiment used, to read the estimates against")
    notes: list[str] = Field(default=[], description="why a figure is missing, or why its interval is likely too narrow (fewer than 60 effective users)")
