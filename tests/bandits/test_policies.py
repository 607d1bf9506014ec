"""Every policy against the same contract, the exact propensities, and regret on seeded runs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bandits.base import ArmStats, with_floor
from bandits.registry import POLICIES, make_policy
from bandits.simulation import simulate
from bandits.thompson import ThompsonSampling

# Every policy but the uniform baseline learns which arm is better.
LEARNING_POLICIES = [name for name in POLICIES if name != "uniform"]


@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize("reward", ["binary", "continuous"])
def test_probabilities_are_a_distribution_and_depend_only_on_the_statistics(name, reward):
    policy = make_policy(name, reward)
    for stats in (ArmStats.of([0, 0, 0], [0, 0, 0]), ArmStats.of([10, 40, 5], [1, 8, 3], [1, 8, 3]), ArmStats.of([500, 500], [50, 75], [70, 90])):
        p = policy.probabilities(stats)
        assert p.shape == stats.pulls.shape and np.all(p >= 0) and p.sum() == pytest.approx(1.0)
        assert np.array_equal(p, policy.probabilities(stats))


@pytest.mark.parametrize("name", LEARNING_POLICIES)
def test_policies_prefer_the_clearly_better_arm(name):
    stats = ArmStats.of([2000, 2000, 2000], [100, 200, 400])
    p = make_policy(name).probabilities(stats)
    assert p.argmax() == 2 and p[2] > 0.85


def test_thompson_probability_matching_agrees_with_sampling():
    stats = ArmStats.of([40, 35, 50], [4, 6, 7])
    exact = ThompsonSampling().probabilities(stats)
    rng = np.random.default_rng(3)
    draws = rng.beta(1 + stats.sums, 1 + stats.pulls - stats.sums, size=(400_000, 3)).argmax(axis=1)
    sampled = np.bincount(draws, minlength=3) / len(draws)
    # 400k draws give a standard error below 0.001.
    assert np.abs(exact - sampled).max() < 0.004


def test_thompson_is_symmetric_and_handles_narrow_far_apart_posteriors():
    p = ThompsonSampling().probabilities(ArmStats.of([100, 100], [30, 30]))
    assert p == pytest.approx([0.5, 0.5], abs=1e-9)
    p = ThompsonSampling().probabilities(ArmStats.of([1_000_000, 1_000_000], [50_000, 200_000]))
    assert p == pytest.approx([0.0, 1.0], abs=1e-12)


def test_floor_keeps_every_arm_reachable():
    p = with_floor(np.array([1.0, 0.0, 0.0]), 0.05)
    assert p == pytest.approx([0.9, 0.05, 0.05]) and p.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="floor must lie"):
        with_floor(np.array([0.5, 0.5]), 0.6)


def test_epsilon_greedy_spreads_epsilon():
    p = make_policy("epsilon_greedy", epsilon=0.3).probabilities(ArmStats.of([10, 10, 10], [1, 5, 2]))
    assert p == pytest.approx([0.1, 0.8, 0.1])


def test_ucb1_tries_every_arm_first():
    p = make_policy("ucb1").probabilities(ArmStats.of([5, 0, 3], [5, 0, 3]))
    assert p == pytest.approx([0, 1, 0])


def test_invalid_settings_name_the_bound():
    with pytest.raises(ValueError, match="epsilon must lie in"):
        make_policy("epsilon_greedy", epsilon=1.5)
    with pytest.raises(ValueError, match="unknown bandit algorithm"):
        make_policy("exp3")
    with pytest.raises(ValueError, match="reward must be"):
        make_policy("thompson", reward="count")  # type: ignore[arg-type]


def test_thompson_beats_uniform_by_a_wide_margin():
    means = [0.10, 0.12, 0.15]
    thompson = simulate("thompson", means, rounds=3000, runs=40, seed=7)
    uniform = simulate("uniform", means, rounds=3000, runs=40, seed=7)
    # Uniform's regret is exactly 3000 * (0.05 + 0.03) / 3 = 80 in expectation.
    assert uniform.mean == pytest.approx(80, rel=0.05)
    assert thompson.mean < 0.5 * uniform.mean
    assert thompson.final_share_of_best > 0.6


@pytest.mark.parametrize("name", ["ucb1", "epsilon_greedy"])
def test_learning_policies_beat_uniform(name):
    means = [0.10, 0.12, 0.15]
    learned = simulate(name, means, rounds=3000, runs=40, seed=11)
    uniform = simulate("uniform", means, rounds=3000, runs=40, seed=11)
    assert learned.mean < uniform.mean
    assert learned.final_share_of_best > 1 / 3


def test_simulation_is_reproducible_and_checks_its_input():
    a = simulate("thompson", [0.2, 0.3], rounds=500, runs=5, seed=1)
    b = simulate("thompson", [0.2, 0.3], rounds=500, runs=5, seed=1)
    assert a == b
    with pytest.raises(ValueError, match="means must list"):
        simulate("thompson", [1.5, 0.2])


@pytest.mark.parametrize("offset", [0.0, 1e6, 1e9, 1e12])
def test_continuous_thompson_is_unmoved_by_an_offset_when_given_centred_moments(offset):
    from bandits.base import ArmStats
    from bandits.thompson import ThompsonSampling

    rng = np.random.default_rng(8)
    arms = [rng.normal(0.0, 1.0, 300), rng.normal(0.15, 1.0, 300)]

    def stats(shift: float) -> ArmStats:
        values = [a + shift for a in arms]
        return ArmStats.of(
            [len(v) for v in values], [float(v.sum()) for v in values], [float((v * v).sum()) for v in values],
            [float(((a - a.mean()) ** 2).sum()) for a in arms],
        )

    policy = ThompsonSampling(reward="continuous")
    # The means themselves can be no more precise than the offset's rounding (about offset x 1e-16 per value).
    tolerance = max(1e-9, offset * 1e-15)
    assert policy.probabilities(stats(offset)) == pytest.approx(policy.probabilities(stats(0.0)), abs=tolerance)
    if offset:  # from the sums alone the variance is lost at these offsets, which moves the allocation
        naive = ArmStats(stats(offset).pulls, stats(offset).sums, stats(offset).sumsq)
        assert offset < 1e9 or abs(policy.probabilities(naive)[0] - policy.probabilities(stats(0.0))[0]) > 1e-3


def test_thompson_over_fifty_like_arms_matches_adaptive_quadrature():
    # Fifty posteriors of like width put their integration panels over one another: thinned to a
    # quarter of the narrowest width, the answer stays that of a fine adaptive quadrature.
    from scipy import integrate, stats as sps

    rng = np.random.default_rng(11)
    pulls = rng.integers(2_000, 40_000, 50).astype(float)
    sums = np.round(pulls * (0.1 + rng.normal(0, 0.004, 50)))
    got = ThompsonSampling("binary").probabilities(ArmStats.of(list(pulls), list(sums), list(sums), [0.0] * 50))
    posteriors = [sps.beta(1 + s, 1 + n - s) for s, n in zip(sums, pulls)]
    for i in np.argsort(got)[-3:]:  # the likeliest arms carry the propensities that matter
        def integrand(x: float) -> float:
            return float(posteriors[i].pdf(x) * np.prod([d.cdf(x) for j, d in enumerate(posteriors) if j != i]))
        expected, _ = integrate.quad(integrand, 0, 1, points=[posteriors[i].mean()], limit=500, epsabs=1e-14)
        assert got[i] == pytest.approx(expected, abs=1e-9)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)


def test_ucb1_on_a_continuous_reward_explores_the_same_whatever_its_unit():
    # The bonus assumes rewards in [0, 1]: on revenue it vanished and the policy turned greedy early
    # (18 runs in 100 settled on the worse of two arms 10 % apart). In units of the arms' spread it does not.
    rng = np.random.default_rng(3)
    values = [rng.normal(1.0, 0.5, 12), rng.normal(1.1, 0.5, 9)]
    policy = make_policy("ucb1", "continuous")
    for scale, shift in ((100.0, 0.0), (1.0, 0.0), (100.0, 5.0)):
        stats = ArmStats(np.array([12.0, 9.0]), np.array([(v * scale + shift).sum() for v in values]), np.array([((v * scale + shift) ** 2).sum() for v in values]))
        assert list(policy.probabilities(stats)) == list(make_policy("ucb1", "continuous").probabilities(
            ArmStats(np.array([12.0, 9.0]), np.array([v.sum() for v in values]), np.array([(v**2).sum() for v in values])))), (scale, shift)
    wins = 0
    for run in range(40):
        pulls, sums, squares = np.zeros(2), np.zeros(2), np.zeros(2)
        for _ in range(600):
            arm = int(rng.random() >= with_floor(policy.probabilities(ArmStats(pulls.copy(), sums.copy(), squares.copy())), 0.01)[0])
            y = rng.normal((100.0, 110.0)[arm], 50.0)
            pulls[arm] += 1
            sums[arm] += y
            squares[arm] += y * y
        wins += pulls[1] > pulls[0]
    assert wins >= 36, wins  # unscaled, about one run in five ended on the worse arm


@pytest.mark.parametrize("pulls, successes", [([0, 10_000], [0, 3]), ([0, 20_000], [0, 1]), ([9_000, 0], [2, 0]), ([8_000, 20], [3_000, 8])])
def test_thompson_on_skewed_beta_posteriors_is_exact_to_the_last_digits(pulls, successes):
    # A few successes in thousands of pulls make a posterior skewed enough that its tail past 9 standard
    # deviations held up to 5e-5 of an arm's probability. Against a fresh arm, Beta(1, 1), the exact
    # answer is the other arm's posterior mean: P(X > U) = E[X].
    from scipy import integrate, stats as sps

    got = ThompsonSampling("binary").probabilities(ArmStats.of([float(p) for p in pulls], [float(s) for s in successes]))
    posteriors = [sps.beta(1 + s, 1 + n - s) for s, n in zip(successes, pulls)]
    cuts = np.concatenate([[0.0], np.geomspace(1e-7, 1.0, 60)])
    for i in range(2):
        def integrand(x: float) -> float:
            return float(posteriors[i].pdf(x) * posteriors[1 - i].cdf(x))
        expected = math.fsum(integrate.quad(integrand, lo, hi, epsabs=0, epsrel=1e-13, limit=500)[0] for lo, hi in zip(cuts[:-1], cuts[1:]))
        assert got[i] == pytest.approx(expected, rel=1e-12, abs=1e-300)
    if 0 in pulls:
        fresh = pulls.index(0)
        assert got[1 - fresh] == pytest.approx(posteriors[1 - fresh].mean(), rel=1e-13)


@pytest.mark.parametrize("offset", [0.0, 1e6, 1e9])
def test_continuous_thompson_on_narrow_posteriors_far_from_zero_matches_the_normal_cdf(offset):
    # Two normal posteriors: P(arm 1 best) = Phi((m1 - m0) / sqrt(s0^2 + s1^2)) exactly. About 1e9 the
    # integration nodes had fallen on steps of 1.2e-7 of a posterior 1e-3 wide: 2.2e-6 off.
    from scipy import stats as sps

    n = np.array([4.0, 4.0])
    sds = np.array([1e-3, 10.0])
    means = np.array([offset, offset + 1.0])
    m2 = sds**2 * n * (n - 1)  # so that variance / pulls is sds^2
    got = ThompsonSampling("continuous").probabilities(ArmStats.of(list(n), list(means * n), list(means * means * n), list(m2)))
    assert got[1] == pytest.approx(sps.norm.cdf(1.0 / math.sqrt(sds @ sds)), rel=1e-12)
