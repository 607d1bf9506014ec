"""Experiment definitions: validated frozen dataclasses and the lifecycle.

The HTTP layer turns JSON into these and back; nothing here knows about JSON
or storage. Every refusal is a `DefinitionError` naming the field and the bound.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence, get_args

from experiments.problems import Problems
from experiments.schedules import Schedule
from experiments.targeting import Group

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ExperimentType = Literal["ab", "bandit"]
MetricKind = Literal["binary", "continuous"]
Status = Literal["draft", "running", "paused", "stopped"]
# The same options as values, for checks at run time and for the schemas and forms that offer them.
EXPERIMENT_TYPES: tuple[ExperimentType, ...] = get_args(ExperimentType)
METRIC_KINDS: tuple[MetricKind, ...] = get_args(MetricKind)

# Metrics computed from /v1/events after each user's exposure; never reported as outcomes.
BUILTIN_METRICS: dict[str, MetricKind] = {
    "purchase_conversion": "binary",
    "revenue": "continuous",
    "retention_d1": "binary",
    "retention_d7": "binary",
    "retention_d30": "binary",
}
# The built-in retention metrics and their day: a user counts as retained when active on day N after exposure.
RETENTION_DAYS: dict[str, int] = {"retention_d1": 1, "retention_d7": 7, "retention_d30": 30}

# Which lifecycle moves are allowed: action -> {from status: to status}.
TRANSITIONS: dict[str, dict[Status, Status]] = {
    "start": {"draft": "running", "paused": "running"},
    "pause": {"running": "paused"},
    "stop": {"running": "stopped", "paused": "stopped"},
}
# Started and not stopped yet: the statuses a stop moves from (running, then paused).
LIVE: tuple[Status, ...] = tuple(TRANSITIONS["stop"])


class DefinitionError(Problems):
    """An experiment definition that cannot be accepted, with every problem found in one pass."""


class TransitionError(ValueError):
    """A lifecycle move that the current status does not allow."""


def _either(options: Sequence[str]) -> str:
    """The options as a refusal names them: 'a' or 'b'."""
    return " or ".join(repr(o) for o in options)


def _repeated(keys: list[str]) -> tuple[str, int] | None:
    """The first key given more than once, and how many times, or None."""
    counts = Counter(keys)
    return next(((k, counts[k]) for k in keys if counts[k] > 1), None)


def _key_problems(field_name: str, key: str) -> list[tuple[str, str]]:
    # fullmatch: with match, '$' also matches before a final newline ("abc\n" was a key).
    return [] if KEY_PATTERN.fullmatch(key) else [(field_name, f"must match {KEY_PATTERN.pattern}")]


def _check_key(field_name: str, key: str) -> None:
    for problem in _key_problems(field_name, key):
        raise DefinitionError(*problem)


def reference_problems(declared: Sequence[str], primary: str, guardrails: Sequence[str]) -> list[tuple[str, str]]:
    """What the primary metric and the guardrails name that is neither declared nor built in (each name once),
    and guardrails given twice: checkable from the declared keys alone, also when a metric's own check failed."""
    known = set(declared) | set(BUILTIN_METRICS)
    problems = []
    if primary not in known:
        problems.append(("primary_metric", f"{primary!r} is neither a declared metric nor a built-in one"))
    first_place: dict[str, int] = {}
    for i, name in enumerate(guardrails):
        first_place.setdefault(name, i)
    problems += [(f"guardrails.{i}", f"{name!r} is neither a declared metric nor a built-in one") for name, i in first_place.items() if name not in known]
    if len(first_place) != len(guardrails):
        problems.append(("guardrails", "guardrail metrics must be unique"))
    return problems


@dataclass(frozen=True)
class Arm:
    """One arm: its share of traffic (A/B), what the storefront shows, and its reward schedule."""

    key: str
    weight: float = 1.0
    payload: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        _check_key("key", self.key)
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise DefinitionError("weight", f"must be a finite number above 0, got {self.weight}")


@dataclass(frozen=True)
class Metric:
    """A metric the experiment is judged on."""

    key: str
    kind: MetricKind = "binary"
    # Complaints, refunds and unsubscribes get worse as they rise: a guardrail on one fails
    # when its difference lies wholly above 0 instead of below.
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        _check_key("key", self.key)
        builtin = BUILTIN_METRICS.get(self.key)
        if builtin is not None and builtin != self.kind:
            raise DefinitionError("kind", f"the built-in metric {self.key!r} is {builtin}, and derived from events: it is always available "
                                          "without declaring it (a metric reported through outcomes needs a key of its own)")
        if self.kind not in METRIC_KINDS:
            raise DefinitionError("kind", f"must be {_either(METRIC_KINDS)}")

    @property
    def builtin(self) -> bool:
        """Whether the service derives this metric from events rather than outcomes."""
        return self.key in BUILTIN_METRICS


# The settings' bounds beyond a probability's own: checked here, and declared by the HTTP schemas.
MAX_ATTRIBUTION_HOURS = 8760  # a year
SEQUENTIAL_TUNING_RANGE = (1, 1e9)
CUPED_DAYS_RANGE = (1, 365)


@dataclass(frozen=True)
class BanditSettings:
    """Which policy allocates users, and the least probability any arm keeps.

    The policy is named, not checked here: the bandit registry that runs it is
    another package, and whoever runs the experiment checks the name against it.
    """

    algorithm: str = "thompson"
    epsilon: float = 0.1
    min_probability: float = 0.01
    # With a window, a pull counts once its outcome arrived or the window has passed since exposure,
    # so outcomes that arrive days later do not count as failures meanwhile; without one, at exposure.
    attribution_hours: float | None = None

    def __post_init__(self) -> None:
        if not self.algorithm:
            raise DefinitionError("bandit.algorithm", "must name a policy")
        if self.attribution_hours is not None and not (math.isfinite(self.attribution_hours) and 0 < self.attribution_hours <= MAX_ATTRIBUTION_HOURS):
            raise DefinitionError("bandit.attribution_hours", f"must lie in (0, {MAX_ATTRIBUTION_HOURS}], got {self.attribution_hours}")
        if not 0 <= self.epsilon <= 1:
            raise DefinitionError("bandit.epsilon", f"must lie in [0, 1], got {self.epsilon}")
        if not 0 <= self.min_probability < 1:
            raise DefinitionError("bandit.min_probability", f"must lie in [0, 1), got {self.min_probability}")


@dataclass(frozen=True)
class AnalysisSettings:
    """How results are computed unless a request overrides it."""

    sequential: bool = False
    sequential_tuning: float = 5000.0
    cuped: bool = True
    cuped_days: int = 14

    def __post_init__(self) -> None:
        low, high = SEQUENTIAL_TUNING_RANGE
        if not (math.isfinite(self.sequential_tuning) and low <= self.sequential_tuning <= high):
            raise DefinitionError("analysis.sequential_tuning", f"must lie in [{low}, {high:g}], got {self.sequential_tuning}")
        if not CUPED_DAYS_RANGE[0] <= self.cuped_days <= CUPED_DAYS_RANGE[1]:
            raise DefinitionError("analysis.cuped_days", f"must lie in [{CUPED_DAYS_RANGE[0]}, {CUPED_DAYS_RANGE[1]}], got {self.cuped_days}")


@dataclass(frozen=True)
class Experiment:
    """A whole definition; its checks span arms, metrics and type."""

    key: str
    name: str
    type: ExperimentType
    arms: tuple[Arm, ...]
    metrics: tuple[Metric, ...]
    primary_metric: str
    traffic: float = 1.0
    description: str = ""
    bandit: BanditSettings | None = None
    status: Status = "draft"
    layer: str | None = None
    targeting: Group | None = None
    analysis: AnalysisSettings = AnalysisSettings()
    guardrails: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Every check that does not need another to pass is made, and all they find is said at once, so
        # that a form shows every problem in one pass rather than one per submit.
        problems = _key_problems("key", self.key) + (_key_problems("layer", self.layer) if self.layer is not None else [])
        if self.type not in EXPERIMENT_TYPES:
            problems.append(("type", f"must be {_either(EXPERIMENT_TYPES)}"))
        if not (0 < self.traffic <= 1):
            problems.append(("traffic", f"must satisfy 0 < traffic <= 1, got {self.traffic}"))
        if len(self.arms) < 2:
            problems.append(("arms", "an experiment needs at least 2 arms"))
        repeated = _repeated([a.key for a in self.arms])
        if repeated is not None:
            problems.append(("arms", f"arm keys must be unique: {repeated[0]!r} is the key of {repeated[1]} arms"))
        problems += [
            (f"metrics.{i}.key", f"{metric.key!r} is a built-in metric derived from events; it is always available without declaring it")
            for i, metric in enumerate(self.metrics) if metric.builtin
        ]
        repeated = _repeated([m.key for m in self.metrics])
        if repeated is not None:
            problems.append(("metrics", f"metric keys must be unique: {repeated[0]!r} is declared {repeated[1]} times"))
        problems += reference_problems([m.key for m in self.metrics], self.primary_metric, self.guardrails)
        if self.type in EXPERIMENT_TYPES:
            problems += self._bandit_problems()
        if problems:
            raise DefinitionError(*problems[0], more=problems[1:])

    def _bandit_problems(self) -> list[tuple[str, str]]:
        """What a bandit's settings get wrong; named after the rest, as they were when checked last and alone."""
        if self.type == "ab":
            return [("bandit", "only bandit experiments take bandit settings")] if self.bandit is not None else []
        if self.bandit is None:
            return [("bandit", "is required for type 'bandit'")]
        problems = []
        try:
            primary: Metric | None = self.metric(self.primary_metric)
        except KeyError:  # named unknown already
            primary = None
        if primary is not None and primary.builtin:
            problems.append(("primary_metric", "a bandit learns from reported outcomes, so its primary metric cannot be a built-in one"))
        elif primary is not None and not primary.higher_is_better:
            problems.append(("primary_metric", "a bandit maximises its primary metric, so it must be one where higher is better"))
        floor = self.bandit.min_probability
        if floor * len(self.arms) > 1:
            problems.append(("bandit.min_probability", f"must be at most 1/{len(self.arms)} with {len(self.arms)} arms, got {floor}"))
        return problems

    @property
    def control(self) -> Arm:
        """The first arm is the control."""
        return self.arms[0]

    def arm(self, key: str) -> Arm:
        """The arm with this key."""
        for arm in self.arms:
            if arm.key == key:
                return arm
        raise KeyError(key)

    def metric(self, key: str) -> Metric:
        """The experiment's metric with this key, or a built-in one."""
        for metric in self.metrics:
            if metric.key == key:
                return metric
        if key in BUILTIN_METRICS:
            return Metric(key, BUILTIN_METRICS[key])
        raise KeyError(key)

    def reported_metric(self, key: str) -> Metric | None:
        """The metric this key names when it is reported through outcomes, else None."""
        for metric in self.metrics:
            if metric.key == key and not metric.builtin:
                return metric
        return None

    def rewards_bandit(self, metric: str) -> bool:
        """Whether outcomes of this metric are a bandit's reward, whose arm statistics move with each user's value."""
        return self.type == "bandit" and metric == self.primary_metric


def transition(status: Status, action: str) -> Status:
    """The status after a lifecycle action, or a `TransitionError` naming the allowed moves."""
    moves = TRANSITIONS.get(action)
    if moves is None:
        raise TransitionError(f"unknown action {action!r}")
    if status not in moves:
        allowed = " or ".join(sorted(moves))
        raise TransitionError(f"cannot {action} an experiment that is {status}; {action} needs it {allowed}")
    return moves[status]


# Fields that define what users are randomised into and what they are judged on;
# frozen once the experiment leaves draft. `traffic` stays editable so that a
# rollout can ramp up: enrolment and arm come from independent hashes, so a new
# share enrols more users without moving anyone between arms.
# `layer` and `targeting` decide who may be enrolled, so they are frozen too.
DESIGN_FIELDS = frozenset({"type", "arms", "metrics", "primary_metric", "bandit", "layer", "targeting"})
