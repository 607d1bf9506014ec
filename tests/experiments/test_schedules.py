"""Reward schedules: exact ratios, binomial rates, the clock (injected, never slept), multipliers."""
from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from experiments.schedules import Action, RewardState, ScheduleError, draw, parse_schedule

DAY = 86_400.0
T0 = 1_790_000_000.0


def run(spec: dict, times: list[float], user: str = "u1", values: list[float | None] | None = None) -> list[float]:
    """Apply a schedule to one user's actions; answer the points of each."""
    schedule = parse_schedule(spec)
    state = RewardState(enrolled_at=T0)
    points = []
    for seq, ts in enumerate(times, start=1):
        value = values[seq - 1] if values else None
        decision = schedule.apply(state, Action("exp", user, seq, ts, value))
        assert decision.state.actions == seq
        assert decision.state.balance == pytest.approx(state.balance + decision.points)
        state = decision.state
        points.append(decision.points)
    return points


def test_fixed_ratio_rewards_exactly_every_nth_action():
    points = run({"type": "fixed_ratio", "every": 5, "points": 100}, [T0 + i for i in range(23)])
    assert [i + 1 for i, p in enumerate(points) if p] == [5, 10, 15, 20]
    assert set(points) == {0.0, 100.0}
    schedule, state = parse_schedule({"type": "fixed_ratio", "every": 3, "points": 1}), RewardState(enrolled_at=T0)
    reasons = []
    for seq in (1, 2):
        decision = schedule.apply(state, Action("exp", "u1", seq, T0 + seq, None))
        state = decision.state
        reasons.append(decision.reason)
    assert reasons == ["2 more actions to the next reward", "1 more action to the next reward"]


def test_variable_ratio_rate_is_within_a_binomial_interval_over_many_users():
    spec = {"type": "variable_ratio", "mean": 5, "points": 100}
    rewarded = actions = 0
    for user in range(2000):
        points = run(spec, [T0 + i for i in range(10)], user=f"user-{user}")
        rewarded += sum(1 for p in points if p)
        actions += len(points)
    lo, hi = sps.binom.interval(0.999, actions, 0.2)
    assert lo <= rewarded <= hi


def test_variable_ratio_is_reproducible_for_audit():
    spec = {"type": "variable_ratio", "mean": 3, "points": 10}
    first = run(spec, [T0 + i for i in range(50)], user="auditable")
    assert first == run(spec, [T0 + i for i in range(50)], user="auditable")
    assert first != run(spec, [T0 + i for i in range(50)], user="someone-else")


def test_fixed_interval_honours_the_clock():
    spec = {"type": "fixed_interval", "seconds": 7 * DAY, "points": 100}
    # 6 days after enrolment: too early; day 7: rewarded; day 8: too early again; day 14: rewarded.
    points = run(spec, [T0 + 6 * DAY, T0 + 7 * DAY, T0 + 8 * DAY, T0 + 13.9 * DAY, T0 + 14 * DAY])
    assert points == [0, 100, 0, 0, 100]


def test_variable_interval_waits_average_the_mean():
    spec = {"type": "variable_interval", "mean_seconds": DAY, "points": 5}
    schedule = parse_schedule(spec)
    waits = []
    for user in range(3000):
        state = RewardState(enrolled_at=T0)
        # One action far in the future is always rewarded and fixes the next eligible time.
        decision = schedule.apply(state, Action("exp", f"u{user}", 1, T0 + 1e9))
        assert decision.rewarded
        waits.append(decision.state.next_eligible_at - (T0 + 1e9))
    mean = sum(waits) / len(waits)
    # Exponential waits: the mean of 3000 has a standard error of DAY / sqrt(3000).
    assert abs(mean - DAY) < 4 * DAY / math.sqrt(len(waits))
    assert min(waits) >= 0


def test_variable_interval_refuses_actions_before_the_drawn_wait():
    spec = {"type": "variable_interval", "mean_seconds": DAY, "points": 5}
    schedule = parse_schedule(spec)
    first_wait = -DAY * math.log(1 - draw("exp", "u1", 0, "interval"))
    state = RewardState(enrolled_at=T0)
    early = schedule.apply(state, Action("exp", "u1", 1, T0 + first_wait - 1))
    on_time = schedule.apply(early.state, Action("exp", "u1", 2, T0 + first_wait))
    assert not early.rewarded and on_time.rewarded


def test_per_unit_pays_in_proportion_to_value():
    points = run({"type": "per_unit", "points_per_unit": 2}, [T0, T0 + 1, T0 + 2], values=[12.5, None, 0.0])
    assert points == [25.0, 0.0, 0.0]


def test_multiplier_doubles_points_inside_its_window_only():
    spec = {"type": "fixed_ratio", "every": 1, "points": 10, "multiplier": {"factor": 2, "start": T0 + DAY, "end": T0 + 2 * DAY}}
    assert run(spec, [T0, T0 + DAY, T0 + 1.5 * DAY, T0 + 2 * DAY]) == [10, 20, 20, 10]


def test_no_action_earns_more_than_1e12_points_whatever_its_factors_multiply_to():
    # 1e12 points per unit, a value of 1e12 and a 1e12 multiplier had granted 1e36 points.
    spec = {"type": "per_unit", "points_per_unit": 1e12, "multiplier": {"factor": 1e12, "start": T0, "end": T0 + DAY}}
    decision = parse_schedule(spec).apply(RewardState(enrolled_at=T0), Action("k", "u", 1, T0 + 1, 1e12))
    assert decision.points == 1e12 and decision.state.balance == 1e12 and "capped at 1e+12 points" in decision.reason


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"type": "fixed_ratio", "every": 0, "points": 1}, "every"),
        ({"type": "fixed_ratio", "every": 2, "points": -1}, "points"),
        ({"type": "variable_ratio", "mean": 0.5, "points": 1}, "mean"),
        ({"type": "fixed_interval", "seconds": 0, "points": 1}, "seconds"),
        ({"type": "variable_interval", "mean_seconds": -3, "points": 1}, "mean_seconds"),
        ({"type": "per_unit", "points_per_unit": 0}, "points_per_unit"),
        ({"type": "lottery"}, "type"),
        ({"type": "fixed_ratio", "every": 2, "points": 1, "bonus": 3}, "bonus"),
        ({"type": "per_unit", "points_per_unit": 1, "multiplier": {"factor": 2, "start": 10, "end": 5}}, "multiplier.end"),
        ({"type": "per_unit", "points_per_unit": 1, "multiplier": {"factor": 0, "start": 1, "end": 5}}, "multiplier.factor"),
    ],
)
def test_invalid_schedules_name_the_field(spec, field):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(spec)
    assert info.value.field == field


def test_describe_round_trips():
    spec = {"type": "variable_interval", "action": "visit", "mean_seconds": 60.0, "points": 3.0, "multiplier": {"factor": 2.0, "start": 1.0, "end": 5.0}}
    assert parse_schedule(spec).describe() == spec
