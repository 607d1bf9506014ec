"""Hash assignment: weights within a chi-square tolerance, traffic, independence, stability."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from experiments.assignment import BUCKETS, ab_arm, bandit_draw, bucket, enrolled, pick, unit_draw
from experiments.hashing import unit_hash


def test_100k_users_split_within_a_chi_square_tolerance_of_the_weights():
    weights = [1.0, 2.0, 1.5]
    counts = np.bincount([ab_arm("salt", "exp", f"user-{i}", weights) for i in range(100_000)], minlength=3)
    expected = 100_000 * np.array(weights) / sum(weights)
    assert sps.chisquare(counts, expected).pvalue > 0.001


def test_traffic_share_is_respected_and_ramping_up_keeps_everyone_enrolled():
    users = [f"u{i}" for i in range(50_000)]
    at_20 = {u for u in users if enrolled("s", "exp", u, 0.2)}
    at_50 = {u for u in users if enrolled("s", "exp", u, 0.5)}
    assert abs(len(at_20) / len(users) - 0.2) < 4 * np.sqrt(0.2 * 0.8 / len(users))
    assert at_20 <= at_50
    assert all(enrolled("s", "exp", u, 1.0) for u in users[:1000])


def test_a_share_rounds_to_the_nearest_bucket_so_a_vanishing_one_enrols_nobody():
    first = next(u for u in (f"u{i}" for i in range(10**7)) if bucket("s", "exp", u, "traffic") == 0)
    assert not enrolled("s", "exp", first, 1e-300) and not enrolled("s", "exp", first, 0.4 / BUCKETS)
    assert enrolled("s", "exp", first, 0.6 / BUCKETS) and enrolled("s", "exp", first, 1.0)
    # Shares that are whole buckets enrol exactly as a bucket's index below the share would.
    users = [f"u{i}" for i in range(20_000)]
    for share in (0.2, 0.5, 0.33333):
        assert [enrolled("s", "exp", u, share) for u in users] == [bucket("s", "exp", u, "traffic") < round(share * BUCKETS) for u in users]


def test_a_bandit_draws_at_the_hash_s_full_resolution():
    # Bucketed draws take at most BUCKETS values (50,000 users would share about 11,000 of them), so an
    # arm of propensity 1e-6 could never be drawn though it was reported; the full hash gives each user
    # a draw of their own, and pick() an arm's chance equal to its propensity.
    users = [f"u{i}" for i in range(50_000)]
    draws = [bandit_draw("s", "exp", u) for u in users]
    assert len(set(draws)) == len(users) and draws[0] == unit_hash("s", "exp", "u0", "arm")
    assert len({unit_draw("s", "exp", u, "arm") for u in users}) < 40_000
    assert pick([1 - 1e-6, 1e-6], 1 - 0.5e-6) == 1 and pick([1 - 1e-6, 1e-6], 1 - 0.5 / BUCKETS) == 0


def test_enrolment_and_arm_are_independent():
    users = [f"u{i}" for i in range(40_000)]
    inside = [ab_arm("s", "exp", u, [1, 1]) for u in users if enrolled("s", "exp", u, 0.3)]
    assert abs(np.mean(inside) - 0.5) < 4 * np.sqrt(0.25 / len(inside))


def test_assignment_is_a_pure_function_of_salt_experiment_and_user():
    assert bucket("s", "e", "u", "arm") == bucket("s", "e", "u", "arm")
    assert len({bucket("s", "e", f"u{i}", "arm") for i in range(2000)}) > 1900
    assert 0 <= bucket("s", "e", "u", "arm") < BUCKETS
    reshuffled = sum(ab_arm("s1", "e", f"u{i}", [1, 1]) != ab_arm("s2", "e", f"u{i}", [1, 1]) for i in range(4000))
    assert 1700 < reshuffled < 2300  # a new salt re-randomises


@pytest.mark.parametrize("u, expected", [(0.0, 0), (0.249, 0), (0.25, 1), (0.99, 2), (0.9999999, 2)])
def test_pick_follows_cumulative_probabilities(u, expected):
    assert pick([0.25, 0.5, 0.25], u) == expected


def test_a_key_ending_in_a_newline_is_refused_by_the_domain_as_by_the_api():
    # KEY_PATTERN.match let "abc\n" through: '$' also matches before a final newline.
    from experiments.definitions import Arm, DefinitionError

    with pytest.raises(DefinitionError, match="must match"):
        Arm(key="abc\n")
    assert Arm(key="abc").key == "abc"
