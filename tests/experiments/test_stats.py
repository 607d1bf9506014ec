"""Statistics against independent references (statsmodels, scipy) on many seeded inputs."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import integrate, stats as sps
from scipy.special import betaln
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

from experiments.stats import ArmSummary, analyse, sample_ratio_mismatch
from experiments.stats.bayes import beta_chance_to_beat, normal_chance_to_beat
from experiments.stats.corrections import adjust, benjamini_hochberg, holm
from experiments.stats.lift import relative_lift
from experiments.stats.means import t_interval, welch_difference, welch_t
from experiments.stats.power import users_per_arm_mean, users_per_arm_proportion
from experiments.stats.proportions import two_proportion_z, wald_difference, wilson

RTOL = 1e-7  # at least 6 significant digits, with room to spare
SEEDS = range(40)


def _counts(seed: int) -> tuple[int, int, int, int]:
    rng = np.random.default_rng(seed)
    nc, nt = rng.integers(20, 50_000, size=2)
    pc, pt = rng.uniform(0.02, 0.6, size=2)
    return int(rng.binomial(nc, pc)), int(nc), int(rng.binomial(nt, pt)), int(nt)


def _values(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 + seed)
    a = rng.exponential(rng.uniform(1, 50), size=rng.integers(2, 3000))
    b = rng.exponential(rng.uniform(1, 50), size=rng.integers(2, 3000))
    return a, b


def _summary(values: np.ndarray) -> ArmSummary:
    return ArmSummary(len(values), float(values.sum()), float((values**2).sum()))


@pytest.mark.parametrize("seed", SEEDS)
def test_two_proportion_z_matches_statsmodels(seed):
    xc, nc, xt, nt = _counts(seed)
    ours = two_proportion_z(xc, nc, xt, nt)
    z, p = proportions_ztest([xt, xc], [nt, nc], alternative="two-sided", prop_var=False)
    assert ours.statistic == pytest.approx(z, rel=RTOL)
    assert ours.p_value == pytest.approx(p, rel=RTOL, abs=1e-300)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
def test_wilson_and_wald_difference_match_statsmodels(seed, alpha):
    xc, nc, xt, nt = _counts(seed)
    lo, hi = proportion_confint(xt, nt, alpha=alpha, method="wilson")
    ours = wilson(xt, nt, alpha)
    assert (ours.low, ours.high) == pytest.approx((lo, hi), rel=RTOL)
    lo, hi = confint_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff", alpha=alpha)
    ours = wald_difference(xc, nc, xt, nt, alpha)
    assert (ours.low, ours.high) == pytest.approx((lo, hi), rel=RTOL, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_welch_matches_scipy(seed):
    a, b = _values(seed)
    ref = sps.ttest_ind(b, a, equal_var=False)
    ours = welch_t(_summary(a), _summary(b))
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-6)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-6)
    lo, hi = ref.confidence_interval(0.95)
    interval = welch_difference(_summary(a), _summary(b), 0.05)
    assert (interval.low, interval.high) == pytest.approx((lo, hi), rel=1e-6)


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_t_interval_of_the_mean_matches_scipy(seed):
    a, _ = _values(seed)
    lo, hi = sps.t.interval(0.9, len(a) - 1, loc=a.mean(), scale=sps.sem(a))
    ours = t_interval(_summary(a), 0.1)
    assert (ours.low, ours.high) == pytest.approx((lo, hi), rel=1e-6)


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_delta_method_lift_matches_a_direct_computation(seed):
    a, b = _values(seed)
    mc, mt = a.mean(), b.mean()
    vc, vt = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    # Gradient of mt/mc - 1 is (1/mc, -mt/mc^2).
    se = math.sqrt(vt / mc**2 + vc * mt**2 / mc**4)
    lift, ci = relative_lift(_summary(a), _summary(b), 0.05, binary=False)
    z = sps.norm.ppf(0.975)
    assert lift == pytest.approx(mt / mc - 1, rel=1e-9)
    assert (ci.low, ci.high) == pytest.approx((lift - z * se, lift + z * se), rel=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method, reference", [("holm", "holm"), ("bh", "fdr_bh")])
def test_corrections_match_statsmodels(seed, method, reference):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.2, size=rng.integers(1, 12)) ** rng.uniform(0.5, 3)
    ours = adjust(list(p), method)
    _, ref, _, _ = multipletests(p, method=reference)
    assert ours == pytest.approx(list(ref), rel=1e-12)


def test_published_golden_cases():
    assert holm([0.01, 0.04, 0.03, 0.005, 0.55, 0.6]) == pytest.approx([0.05, 0.12, 0.12, 0.03, 1, 1])
    assert benjamini_hochberg([0.898, 0.138, 0.007, 0.964, 0.538, 0.006, 0.138]) == pytest.approx(
        [0.964, 0.2415, 0.0245, 0.964, 0.7532, 0.0245, 0.2415], abs=1e-4
    )


def test_undefined_p_values_stay_out_of_the_correction():
    assert adjust([0.01, None, 0.04], "holm") == [0.02, None, 0.04]
    assert adjust([None], "bh") == [None]
    with pytest.raises(ValueError, match="holm, bh or none"):
        adjust([0.1], "bonferroni")  # type: ignore[arg-type]


def _closed_form_beta(a1: int, b1: int, a2: int, b2: int) -> float:
    """Evan Miller's exact sum for P(p2 > p1), p1 ~ Beta(a1, b1), p2 ~ Beta(a2, b2)."""
    total = 0.0
    for i in range(a2):
        total += math.exp(betaln(a1 + i, b1 + b2) - math.log(b2 + i) - betaln(1 + i, b2) - betaln(a1, b1))
    return total


@pytest.mark.parametrize("seed", SEEDS)
def test_beta_chance_to_beat_matches_the_exact_sum(seed):
    rng = np.random.default_rng(seed)
    nc, nt = rng.integers(1, 3000, size=2)
    xc, xt = int(rng.integers(0, nc + 1)), int(rng.integers(0, nt + 1))
    ours = beta_chance_to_beat(xc, int(nc), xt, int(nt))
    ref = _closed_form_beta(1 + xc, 1 + int(nc) - xc, 1 + xt, 1 + int(nt) - xt)
    assert ours == pytest.approx(ref, rel=1e-7, abs=1e-12)


def _exact_beta(xc: int, nc: int, xt: int, nt: int) -> Fraction:
    """Evan Miller's sum for P(theta_t > theta_c) under Beta(1, 1) priors, in exact rational arithmetic."""
    def beta(a: int, b: int) -> Fraction:
        return Fraction(math.factorial(a - 1) * math.factorial(b - 1), math.factorial(a + b - 1))

    a1, b1, a2, b2 = 1 + xc, 1 + nc - xc, 1 + xt, 1 + nt - xt
    return sum((beta(a1 + i, b1 + b2) / ((b2 + i) * beta(1 + i, b2) * beta(a1, b1)) for i in range(a2)), Fraction(0))


@pytest.mark.parametrize("counts", [(21, 60, 0, 60), (20, 20, 0, 30), (21, 60, 3, 60), (0, 60, 21, 60), (0, 30, 20, 20), (5, 100, 7, 100),
                                    (50, 1000, 70, 1000), (3, 3, 0, 3), (0, 0, 0, 0)])
def test_beta_chance_to_beat_keeps_its_digits_however_small_or_near_one(counts):
    # 1e-13 of the treatment's mass was left out at each end: 3e-6 of a chance of 2.4e-8, and all of one of 5e-15.
    exact = _exact_beta(*counts)
    assert beta_chance_to_beat(*counts) == pytest.approx(float(exact), rel=1e-12, abs=0)
    assert beta_chance_to_beat(*counts) == pytest.approx(float(exact), abs=5e-15)  # near 1, to some ulps of 1


@pytest.mark.parametrize("counts", [(50_000, 1_000_000, 50_600, 1_000_000), (10, 1_000_000, 30, 1_000_000), (3, 10, 900, 1000)])
def test_beta_chance_to_beat_at_scale_matches_integration_over_the_difference(counts):
    xc, nc, xt, nt = counts
    c, t = sps.beta(1 + xc, 1 + nc - xc), sps.beta(1 + xt, 1 + nt - xt)
    # Independent route: P(t > c) = int f_c(y) (1 - F_t(y)) dy, integrated on a fine grid.
    lo, hi = min(c.ppf(1e-14), t.ppf(1e-14)), max(c.ppf(1 - 1e-14), t.ppf(1 - 1e-14))
    grid = np.linspace(lo, hi, 400_001)
    ref = integrate.simpson(c.pdf(grid) * t.sf(grid), x=grid)
    assert beta_chance_to_beat(xc, nc, xt, nt) == pytest.approx(ref, rel=1e-6, abs=1e-10)


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_normal_chance_to_beat(seed):
    a, b = _values(seed)
    z = (b.mean() - a.mean()) / math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert normal_chance_to_beat(_summary(a), _summary(b)) == pytest.approx(sps.norm.cdf(z), rel=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_srm_matches_scipy_chisquare(seed):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 3, size=rng.integers(2, 6))
    observed = rng.multinomial(int(rng.integers(100, 100_000)), weights / weights.sum())
    ours = sample_ratio_mismatch(list(observed), list(weights))
    expected = observed.sum() * weights / weights.sum()
    ref = sps.chisquare(observed, expected)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-300)
    assert ours.mismatch == (ref.pvalue < 0.001)


def test_srm_flags_a_broken_split():
    assert sample_ratio_mismatch([5_000, 5_400], [1, 1]).mismatch
    assert not sample_ratio_mismatch([5_000, 5_050], [1, 1]).mismatch
    assert sample_ratio_mismatch([0, 0], [1, 1]) is None


def test_sample_size():
    # The textbook case: 10% -> 12% at alpha 0.05 and power 0.8 needs 3,841 users per arm.
    assert users_per_arm_proportion(0.10, 0.02) == 3841
    ref = NormalIndPower().solve_power(effect_size=0.5 / 4.0, alpha=0.05, power=0.9, ratio=1.0)
    assert users_per_arm_mean(4.0, 0.5, power=0.9) == math.ceil(ref)
    with pytest.raises(ValueError, match="power: must lie"):
        users_per_arm_mean(1.0, 0.1, power=1.5)


def test_analysis_end_to_end_on_three_arms_uses_holm_across_treatments():
    arms = [("c", ArmSummary.binary(5000, 500)), ("t1", ArmSummary.binary(5000, 560)), ("t2", ArmSummary.binary(5000, 610))]
    result = analyse(arms, "binary", alpha=0.05, correction="holm")
    raw = [proportions_ztest([x, 500], [5000, 5000])[1] for x in (560, 610)]
    _, ref, _, _ = multipletests(raw, method="holm")
    assert [a.p_value for a in result.arms[1:]] == pytest.approx(raw, rel=RTOL)
    assert [a.p_value_adjusted for a in result.arms[1:]] == pytest.approx(list(ref), rel=RTOL)
    assert [a.significant for a in result.arms[1:]] == [bool(p < 0.05) for p in ref]
    assert result.arms[0].p_value is None and result.arms[0].diff is None


@pytest.mark.parametrize(
    "arms, kind",
    [
        ([("c", ArmSummary(0, 0, 0)), ("t", ArmSummary(0, 0, 0))], "binary"),
        ([("c", ArmSummary.binary(10, 0)), ("t", ArmSummary.binary(10, 0))], "binary"),
        ([("c", ArmSummary.binary(10, 10)), ("t", ArmSummary.binary(10, 10))], "binary"),
        ([("c", ArmSummary(1, 3.0, 9.0)), ("t", ArmSummary(1, 4.0, 16.0))], "continuous"),
        ([("c", ArmSummary(5, 10.0, 20.0)), ("t", ArmSummary(5, 10.0, 20.0))], "continuous"),
        ([("c", ArmSummary(5, 0.0, 0.0)), ("t", ArmSummary(5, 3.0, 9.0))], "continuous"),
    ],
    ids=["no-users", "no-conversions", "all-convert", "one-user", "zero-variance", "control-zero"],
)
def test_degenerate_data_gives_notes_not_errors_or_nan(arms, kind):
    result = analyse(arms, kind)
    treat = result.arms[1]
    for name in ("mean", "diff", "lift", "p_value", "p_value_adjusted", "chance_to_beat_control"):
        value = getattr(treat, name)
        assert value is None or math.isfinite(value)
    assert treat.notes, "an undefined figure must say why"


@pytest.mark.parametrize("n", [1, 7, 40, 1000, 123457])
def test_wilson_bounds_are_exact_at_zero_and_all_successes(n):
    none, every = wilson(0, n, 0.05), wilson(n, n, 0.05)
    assert none.low == 0.0 and every.high == 1.0
    assert 0.0 < none.high < 1.0 and 0.0 < every.low < 1.0


@pytest.mark.parametrize("level", [1e6, 1e11, -3e13])
def test_a_difference_of_means_far_from_zero_keeps_the_digits_rounding_each_mean_drops(level):
    # At 1e11 an ulp is 1.5e-5, a large share of a difference of 2e-3 between arms spread by 1e-2.
    from fractions import Fraction

    rng = np.random.default_rng(5)
    control, treat = level + rng.normal(0, 1e-2, 50), level + 2e-3 + rng.normal(0, 1e-2, 60)
    exact = sum(map(Fraction, treat)) / len(treat) - sum(map(Fraction, control)) / len(control)
    arms = [("control", ArmSummary.of_values(control)), ("treat", ArmSummary.of_values(treat))]
    assert abs(Fraction(arms[1][1].mean_difference(arms[0][1])) - exact) <= 1e-12 * abs(exact)
    result = analyse(arms, kind="continuous", alpha=0.05)
    treated = result.arms[1]
    assert abs(Fraction(treated.diff) - exact) <= 1e-12 * abs(exact)
    # The exact means' difference and variances into Welch's test: the variances are exact already.
    vc, vt = np.var(control - level, ddof=1) / 50, np.var(treat - level, ddof=1) / 60
    t = float(exact) / math.sqrt(vc + vt)
    df = (vc + vt) ** 2 / (vc**2 / 49 + vt**2 / 59)
    assert treated.p_value == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-6)
    assert treated.lift == pytest.approx(float(exact / (sum(map(Fraction, control)) / 50)), rel=1e-9)


def test_a_mean_of_values_that_dwarf_it_keeps_no_spurious_residual():
    # The deviations from a mean of 1.5 round by an ulp of 1e16 each: their sum is no measure of what
    # rounding the mean dropped, which here is nothing.
    control, treat = ArmSummary.of_values([1e16, -1e16 + 2, 1, 3]), ArmSummary.of_values([1.5, 1.5])
    assert control.mean == 1.5 and treat.mean_difference(control) == 0.0
