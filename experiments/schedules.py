"""Loyalty reward schedules: what a qualifying action earns, given where the user stands.

Each schedule is a frozen dataclass with `apply(state, action) -> Decision`.
Random draws come from `draw(experiment, user, sequence, purpose)`, a uniform
number derived by hashing, so any reward can be recomputed and audited from
the ledger alone, on any machine and with any library version.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Mapping

from experiments.hashing import unit_hash

# Points, values and durations stay within this magnitude, so balances stay finite.
MAX_MAGNITUDE = 1e12


class ScheduleError(ValueError):
    """A schedule that cannot be accepted; `field` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def draw(experiment: str, user_id: str, sequence: int, purpose: str) -> float:
    """A uniform number in [0, 1) fixed by (experiment, user, action sequence, purpose)."""
    return unit_hash(experiment, user_id, str(sequence), purpose)


def parameter(*, gt: float | None = None, ge: float | None = None, le: float = MAX_MAGNITUDE, integer: bool = False, doc: str = "") -> Any:
    """A schedule parameter with its bounds: the one place they are written, for checks and for request schemas."""
    default = 1 if integer else 1.0
    return field(default=default, metadata={"gt": gt, "ge": ge, "le": le, "integer": integer, "doc": doc})


def check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    """Refuse a value outside its parameter's bounds with a message that names them."""
    kind = "a whole number" if meta["integer"] else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (meta["integer"] and not float(value).is_integer()):
        raise ScheduleError(name, f"must be {kind}, got {value!r}")
    low = f"above {meta['gt']:g}" if meta["gt"] is not None else f"at least {meta['ge']:g}"
    bound = f"{low} and at most {meta['le']:g}"
    if not math.isfinite(value) or value > meta["le"]:
        raise ScheduleError(name, f"must be {kind} {bound}, got {value}")
    if (meta["gt"] is not None and value <= meta["gt"]) or (meta["ge"] is not None and value < meta["ge"]):
        raise ScheduleError(name, f"must be {kind} {bound}, got {value}")


# The most points one action earns: the API's bound on any number it takes or gives.
MAX_POINTS = 1e12


@dataclass(frozen=True)
class Multiplier:
    """Points are multiplied by `factor` for actions in [start, end) (epoch seconds)."""

    factor: float
    start: float
    end: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.factor) or self.factor <= 0 or self.factor > MAX_MAGNITUDE:
            raise ScheduleError("multiplier.factor", f"must be a finite number above 0 and at most {MAX_MAGNITUDE:g}, got {self.factor}")
        if not self.start < self.end:
            raise ScheduleError("multiplier.end", "must be after multiplier.start")

    def applies(self, ts: float) -> bool:
        """Whether an action at `ts` falls in the window."""
        return self.start <= ts < self.end


@dataclass(frozen=True)
class RewardState:
    """Where one user stands: qualifying actions so far, rewards, balance and clocks."""

    enrolled_at: float
    actions: int = 0
    rewards: int = 0
    balance: float = 0.0
    last_reward_at: float | None = None
    next_eligible_at: float | None = None


@dataclass(frozen=True)
class Action:
    """One qualifying action: its position in the user's sequence, time and value."""

    experiment: str
    user_id: str
    sequence: int
    ts: float
    value: float | None = None


@dataclass(frozen=True)
class Decision:
    """What an action earned and the user's state afterwards."""

    rewarded: bool
    points: float
    state: RewardState
    reason: str


@dataclass(frozen=True)
class Schedule(ABC):
    """The contract: decide one qualifying action's reward from the user's state."""

    type: ClassVar[str]
    action: str = "purchase"
    multiplier: Multiplier | None = None

    def __post_init__(self) -> None:
        for f in self.parameters():
            check_bounds(f.name, getattr(self, f.name), f.metadata)

    @classmethod
    def parameters(cls) -> list[Any]:
        """The schedule's own parameters (dataclass fields with bounds), in declaration order."""
        return [f for f in fields(cls) if "le" in f.metadata]

    def apply(self, state: RewardState, action: Action) -> Decision:
        """Count the action, decide its points, apply any multiplier, update the state."""
        counted = replace(state, actions=state.actions + 1)
        points, reason, next_eligible = self._decide(counted, action)
        if points > 0 and self.multiplier is not None and self.multiplier.applies(action.ts):
            points *= self.multiplier.factor
            reason += f" x{self.multiplier.factor:g} multiplier"
        if points > MAX_POINTS:
            # Each factor may reach 1e12, and their product 1e36: no action earns more than any number the API takes.
            points = MAX_POINTS
            reason += f", capped at {MAX_POINTS:g} points"
        if points <= 0:
            return Decision(False, 0.0, replace(counted, next_eligible_at=next_eligible), reason)
        after = replace(
            counted,
            rewards=counted.rewards + 1,
            balance=counted.balance + points,
            last_reward_at=action.ts,
            next_eligible_at=next_eligible,
        )
        return Decision(True, points, after, reason)

    @abstractmethod
    def _decide(self, state: RewardState, action: Action) -> tuple[float, str, float | None]:
        """(points before any multiplier, reason, next eligible time) for a counted action."""

    def describe(self) -> dict[str, Any]:
        """The schedule as plain values, the inverse of `parse_schedule`."""
        out: dict[str, Any] = {"type": self.type}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "multiplier":
                if value is not None:
                    out[name] = {"factor": value.factor, "start": value.start, "end": value.end}
            else:
                out[name] = value
        return out


@dataclass(frozen=True)
class FixedRatio(Schedule):
    """Every `every`-th qualifying action earns `points`."""

    type: ClassVar[str] = "fixed_ratio"
    every: int = parameter(ge=1, integer=True, doc="reward every this many qualifying actions")
    points: float = parameter(gt=0, doc="points per reward")

    def _decide(self, state: RewardState, action: Action) -> tuple[float, str, float | None]:
        if state.actions % self.every == 0:
            return self.points, f"action {state.actions} is a multiple of {self.every}", None
        left = self.every - state.actions % self.every
        return 0.0, f"{left} more action{'s' if left != 1 else ''} to the next reward", None


@dataclass(frozen=True)
class VariableRatio(Schedule):
    """Each qualifying action earns `points` with probability 1/`mean`."""

    type: ClassVar[str] = "variable_ratio"
    mean: float = parameter(ge=1, doc="a reward with probability 1/mean per qualifying action")
    points: float = parameter(gt=0, doc="points per reward")

    def _decide(self, state: RewardState, action: Action) -> tuple[float, str, float | None]:
        u = draw(action.experiment, action.user_id, action.sequence, "ratio")
        if u < 1.0 / self.mean:
            return self.points, f"draw {u:.6f} < 1/{self.mean:g}", None
        return 0.0, f"draw {u:.6f} >= 1/{self.mean:g}", None


@dataclass(frozen=True)
class _Interval(Schedule):
    """The first action once the current wait has passed since the last reward (or enrolment)."""

    points: float = parameter(gt=0, doc="points per reward")

    @abstractmethod
    def _wait(self, experiment: str, user_id: str, sequence: int) -> float:
        """Seconds from a reward (or enrolment) to the next eligible action."""

    def _decide(self, state: RewardState, action: Action) -> tuple[float, str, float | None]:
        eligible_at = state.next_eligible_at
        if eligible_at is None:  # the first wait runs from enrolment
            eligible_at = state.enrolled_at + self._wait(action.experiment, action.user_id, 0)
        if action.ts >= eligible_at:
            # The next wait is drawn from the rewarded action's sequence, so it is auditable.
            return self.points, "interval elapsed", action.ts + self._wait(action.experiment, action.user_id, action.sequence)
        return 0.0, f"{eligible_at - action.ts:.0f} s until the next reward", eligible_at


@dataclass(frozen=True)
class FixedInterval(_Interval):
    """The first qualifying action at least `seconds` after the last reward earns `points`."""

    type: ClassVar[str] = "fixed_interval"
    seconds: float = parameter(gt=0, doc="seconds from a reward (or enrolment) to the next eligible action: 86400 a day, 604800 a week")

    def _wait(self, experiment: str, user_id: str, sequence: int) -> float:
        return self.seconds


@dataclass(frozen=True)
class VariableInterval(_Interval):
    """As fixed interval, with each wait drawn from an exponential distribution of mean `mean_seconds`."""

    type: ClassVar[str] = "variable_interval"
    mean_seconds: float = parameter(gt=0, doc="mean of the exponentially drawn wait, in seconds: 86400 a day, 604800 a week")

    def _wait(self, experiment: str, user_id: str, sequence: int) -> float:
        # Inverse-CDF of the exponential; 1 - u lies in (0, 1], so the log is finite.
        return -self.mean_seconds * math.log(1.0 - draw(experiment, user_id, sequence, "interval"))


@dataclass(frozen=True)
class PerUnit(Schedule):
    """Points in proportion to the action's value (for example, 1 point per unit spent)."""

    type: ClassVar[str] = "per_unit"
    points_per_unit: float = parameter(gt=0, doc="points per unit of the action's value")

    def _decide(self, state: RewardState, action: Action) -> tuple[float, str, float | None]:
        if action.value is None or action.value <= 0:
            return 0.0, "the action has no positive value", None
        return action.value * self.points_per_unit, f"{action.value:g} units x {self.points_per_unit:g}", None


SCHEDULES: dict[str, type[Schedule]] = {
    cls.type: cls for cls in (FixedRatio, VariableRatio, FixedInterval, VariableInterval, PerUnit)
}


def parse_schedule(spec: Mapping[str, Any]) -> Schedule:
    """Build a schedule from plain values (timestamps in the multiplier as epoch seconds)."""
    kind = spec.get("type")
    cls = SCHEDULES.get(str(kind))
    if cls is None:
        raise ScheduleError("type", f"must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    fields = {k: v for k, v in spec.items() if k != "type"}
    unknown = set(fields) - set(cls.__dataclass_fields__)
    if unknown:
        raise ScheduleError(sorted(unknown)[0], f"is not a field of a {kind} schedule")
    if fields.get("multiplier") is not None:
        m = fields["multiplier"]
        fields["multiplier"] = Multiplier(float(m["factor"]), float(m["start"]), float(m["end"]))
    return cls(**fields)
