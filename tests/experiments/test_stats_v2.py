"""Version 2 statistics against references computed here from raw per-user data (numpy, scipy, statsmodels).

Seeded data: 2 to 5 arms of unequal sizes, tiny arms (1-3 users), no and all
conversions, heavy tails (lognormal, sigma 2) and values far from zero
(offsets 1e6, 1e9, 1e12). References work on values - offset, which is exact
for floats that close to the offset. Far from zero an arm's mean itself can
only be stored to within an ulp or two of the offset, so each comparison
allows, beyond 1e-9 relative, what moving each arm's mean by 4 ulps changes
in the reference (`_slack`); at offset 0 that is nothing.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from experiments.stats import ArmSummary, analyse
from experiments.stats.cuped import MAX_WIDENING, CupedArm, cuped
from experiments.stats.ipw import PropensitySums, best_arm_target, evaluate_allocation, ipw_arm
from experiments.stats.lift import lift_estimate, relative_lift
from experiments.stats.means import welch_t
from experiments.stats.power import plan_sample_size, sequential_users_per_arm, users_per_arm_mean, users_per_arm_proportion
from experiments.stats.proportions import wald_difference
from experiments.stats.sequential import always_valid_p_value, confidence_sequence, half_width, rho

REL = 1e-9
SEEDS = range(30)
OFFSETS = (0.0, 0.0, 1e6, 1e9, 1e12)
Figures = dict[str, list[float | None]]


def _close(ours: float | None, ref: float | None, slack: float = 0.0, rel: float = REL) -> None:
    """ours == ref to `rel` plus `slack`; both None when undefined; never NaN."""
    if ref is None:
        assert ours is None
        return
    assert ours is not None and math.isfinite(ours)
    assert abs(ours - ref) <= rel * abs(ref) + slack + 1e-300, (ours, ref, slack)


def _slack(reference: Callable[[list[np.ndarray]], Figures], shifted: list[np.ndarray], offset: float) -> Figures:
    """Per figure, how much moving each arm's values (so its mean) by 4 ulps of the offset moves the reference."""
    base = reference(shifted)
    out: Figures = {k: [0.0] * len(v) for k, v in base.items()}
    delta = 4 * float(np.spacing(offset)) if offset else 0.0
    if delta == 0:
        return out
    for j in range(len(shifted)):
        moved = reference([a + delta if i == j else a for i, a in enumerate(shifted)])
        for k, values in base.items():
            for i, (b, m) in enumerate(zip(values, moved[k])):
                if b is not None and m is not None:
                    out[k][i] += abs(m - b)  # type: ignore[operator]
    return out


# ---------- seeded data ----------


def _sizes(rng: np.random.Generator, k: int) -> list[int]:
    return [int(rng.integers(1, 4)) if rng.random() < 0.25 else int(rng.integers(4, 3000)) for _ in range(k)]


def _continuous(seed: int) -> tuple[list[np.ndarray], float]:
    """Arms of values - offset (exactly representable next to the offset) and the offset."""
    rng = np.random.default_rng(seed)
    offset = OFFSETS[seed % len(OFFSETS)]
    arms = []
    for n in _sizes(rng, int(rng.integers(2, 6))):
        shape = rng.choice(["lognormal", "normal", "steps"])
        if shape == "lognormal":
            v = rng.lognormal(rng.uniform(0, 2), 2.0, size=n)
        elif shape == "normal":
            v = rng.normal(rng.uniform(-5, 5), rng.uniform(0.1, 10), size=n)
        else:
            v = (np.arange(n) % 10).astype(float) + rng.integers(0, 2)  # the 1e9 + (i mod 10) case
        raw = offset + v
        arms.append(raw - offset)
    return arms, offset


def _binary(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(500 + seed)
    arms = []
    for n in _sizes(rng, int(rng.integers(2, 6))):
        p = rng.choice([0.0, 1.0, rng.uniform(0.01, 0.5), rng.uniform(0.01, 0.5)])
        arms.append((rng.random(n) < p).astype(float))
    return arms


# ---------- 1. moments ----------


@pytest.mark.parametrize("seed", SEEDS)
def test_moments_match_numpy_far_from_zero(seed):
    arms, offset = _continuous(seed)
    for shifted in arms:
        ours = ArmSummary.of_values(shifted + offset)
        assert ours.users == len(shifted)
        _close(ours.mean, float(shifted.mean()) + offset, slack=4 * float(np.spacing(offset)))
        _close(ours.variance, float(shifted.var(ddof=1)) if len(shifted) > 1 else None)
        m2 = float(np.sum((shifted - shifted.mean()) ** 2))  # what the service's two-pass query hands over
        given = ArmSummary.of_moments(len(shifted), float(shifted.mean()) + offset, m2)
        assert given.mean == float(shifted.mean()) + offset
        _close(given.variance, m2 / (len(shifted) - 1) if len(shifted) > 1 else None, rel=1e-15)


def test_legacy_constructor_and_binary_keep_their_meaning():
    arm = ArmSummary(3, 6.0, 14.0)
    assert (arm.users, arm.total, arm.sumsq, arm.mean, arm.variance) == (3, 6.0, 14.0, 2.0, 1.0)
    n, x = 10**9, 10**9 - 1  # x - x^2/n would keep about 7 digits here
    assert ArmSummary.binary(n, x).variance == pytest.approx(x / n * (1 - x / n) * n / (n - 1), rel=REL)
    assert ArmSummary.of_values([]).mean is None and ArmSummary.of_moments(0, 5.0, 1.0).mean is None


def test_welch_far_from_zero_matches_scipy():
    # With sum-of-squares variances this gives p = 0.51 where scipy says 0.0010; at 1e9 a mean is stored to 1e-7.
    a = 1e9 + (np.arange(100) % 10)
    b = 1e9 + (np.arange(120) % 10) + 1.3
    ref = sps.ttest_ind(b - 1e9, a - 1e9, equal_var=False)
    ours = welch_t(ArmSummary.of_values(a), ArmSummary.of_values(b))
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-6)


# ---------- 2. lift ----------


@pytest.mark.parametrize("scale", [1e-150, 1e-90, 1e80, 1e150])
def test_lift_is_finite_where_mc_to_the_fourth_is_not(scale):
    rng = np.random.default_rng(7)
    a, b = rng.lognormal(0, 1, 200), rng.lognormal(0.1, 1, 150)
    mc, mt = a.mean(), b.mean()
    vc, vt = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)  # lift and its se do not change with the scale
    lift, ci = relative_lift(ArmSummary.of_values(a * scale), ArmSummary.of_values(b * scale), 0.05, binary=False)
    z = sps.norm.ppf(0.975)
    assert lift == pytest.approx(mt / mc - 1, rel=1e-9)
    assert (ci.low, ci.high) == pytest.approx((lift - z * se, lift + z * se), rel=1e-9)


def test_lift_beyond_float_range_is_none_with_a_note():
    control, treat = ArmSummary.of_values([1e-300, 2e-300, 3e-300]), ArmSummary.of_values([1e10, 2e10])
    assert relative_lift(control, treat, 0.05, binary=False) is None
    assert "not a finite number" in lift_estimate(control, treat, binary=False).note
    result = analyse([("c", control), ("t", treat)], "continuous")
    assert result.arms[1].lift is None and any("finite" in n for n in result.arms[1].notes)


# ---------- analysis references ----------


def _t_lift(c: np.ndarray, t: np.ndarray, offset: float, binary: bool) -> tuple[float, float | None] | None:
    """The lift and its delta-method se; the se is None where no interval is defined (an arm of one user, or no variation in a continuous metric)."""
    mc, mt = c.mean() + offset, t.mean() + offset
    if mc == 0:
        return None
    lift = (t.mean() - c.mean()) / mc
    if binary:
        vc, vt = mc * (1 - mc) / len(c), mt * (1 - mt) / len(t)
    elif len(c) < 2 or len(t) < 2:
        return lift, None
    else:
        vc, vt = c.var(ddof=1) / len(c), t.var(ddof=1) / len(t)
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    if (binary and se == 0 and lift == 0) or (not binary and vc == 0 and vt == 0):  # every user alike, or each arm constant
        return lift, None
    return lift, se


def _unpooled_se(c: np.ndarray, t: np.ndarray, binary: bool) -> float | None:
    if binary:
        return math.sqrt(c.mean() * (1 - c.mean()) / len(c) + t.mean() * (1 - t.mean()) / len(t))
    if len(c) < 2 or len(t) < 2:
        return None
    return math.sqrt(c.var(ddof=1) / len(c) + t.var(ddof=1) / len(t))


def _fixed_reference(binary: bool, offset: float, alpha: float) -> Callable[[list[np.ndarray]], Figures]:
    z = sps.norm.isf(alpha / 2)

    def reference(arms: list[np.ndarray]) -> Figures:
        out: Figures = {k: [] for k in ("diff", "lo", "hi", "lift", "lift_lo", "lift_hi", "p", "chance")}
        c = arms[0]
        for t in arms[1:]:
            row: dict[str, float | None] = dict.fromkeys(out)
            row["diff"] = float(t.mean() - c.mean())
            if binary:
                xc, xt = int(c.sum()), int(t.sum())
                if 0 < xc + xt < len(c) + len(t):
                    row["p"] = float(proportions_ztest([xt, xc], [len(t), len(c)])[1])
                row["lo"], row["hi"] = confint_proportions_2indep(xt, len(t), xc, len(c), method="wald", compare="diff", alpha=alpha)
                if row["lo"] == row["hi"] == 0:  # every user alike in both arms: no interval is defined
                    row["lo"] = row["hi"] = None
            elif len(c) > 1 and len(t) > 1 and c.var() + t.var() > 0:
                ref = sps.ttest_ind(t, c, equal_var=False)
                row["p"] = float(ref.pvalue)
                row["lo"], row["hi"] = ref.confidence_interval(1 - alpha)
                se = _unpooled_se(c, t, False)
                row["chance"] = float(sps.norm.cdf(row["diff"] / se))
            lift = _t_lift(c, t, offset, binary)
            if lift is not None:
                row["lift"] = lift[0]
            if lift is not None and lift[1] is not None:
                row["lift_lo"], row["lift_hi"] = lift[0] - z * lift[1], lift[0] + z * lift[1]
            for k in out:
                out[k].append(row[k])
        return out

    return reference


def _check_analysis(result, ref: Figures, slack: Figures, correction: str, alpha: float) -> None:
    keys = {"diff": "diff", "lift": "lift", "p": "p_value", "chance": "chance_to_beat_control"}
    for i, arm in enumerate(result.arms[1:]):
        for key, name in keys.items():
            if key != "chance" or ref[key][i] is not None:
                _close(getattr(arm, name), ref[key][i], slack[key][i])
        for lo, hi, name in (("lo", "hi", "diff_ci"), ("lift_lo", "lift_hi", "lift_ci")):
            interval = getattr(arm, name)
            if ref[lo][i] is None:
                assert interval is None
            else:
                _close(interval.low, ref[lo][i], slack[lo][i])
                _close(interval.high, ref[hi][i], slack[hi][i])
        if any(getattr(arm, n) is None for n in ("diff", "diff_ci", "lift", "p_value")):
            assert arm.notes, "an undefined figure must say why"
    present = [i for i, p in enumerate(ref["p"]) if p is not None]
    if present:
        method = {"holm": "holm", "bh": "fdr_bh"}[correction]
        adjusted = multipletests([ref["p"][i] for i in present], method=method)[1]
        room = 5 * sum(slack["p"][i] for i in present)
        for i, p_adj in zip(present, adjusted):
            _close(result.arms[1 + i].p_value_adjusted, float(p_adj), room)
            if abs(p_adj - alpha) > 1e-6:
                assert result.arms[1 + i].significant == (p_adj < alpha)


@pytest.mark.parametrize("seed", SEEDS)
def test_fixed_analysis_matches_references_on_continuous_arms(seed):
    arms, offset = _continuous(seed)
    alpha, correction = (0.05, "holm") if seed % 2 else (0.1, "bh")
    result = analyse([(f"a{i}", ArmSummary.of_values(a + offset)) for i, a in enumerate(arms)], "continuous", alpha, correction)
    reference = _fixed_reference(False, offset, alpha)
    assert result.test == "welch_t"
    _check_analysis(result, reference(arms), _slack(reference, arms, offset), correction, alpha)


@pytest.mark.parametrize("seed", SEEDS)
def test_fixed_analysis_matches_references_on_binary_arms(seed):
    arms = _binary(seed)
    result = analyse([(f"a{i}", ArmSummary.binary(len(a), int(a.sum()))) for i, a in enumerate(arms)], "binary", 0.05, "holm")
    reference = _fixed_reference(True, 0.0, 0.05)
    assert result.test == "two_proportion_z"
    _check_analysis(result, reference(arms), _slack(reference, arms, 0.0), "holm", 0.05)


# ---------- 3. sequential ----------


def _api_half_width(se: float, n: float, alpha: np.ndarray | float, tuning: float, log_alpha: np.ndarray | float | None = None) -> np.ndarray:
    """The half-width as API.md writes it; ln(x / alpha) taken as ln x - ln alpha only so that alpha may be 1e-308."""
    log_a = np.log(alpha) if log_alpha is None else log_alpha
    r = np.sqrt((-2 * log_a + np.log(-2 * log_a + 1)) / tuning)
    s2 = se**2 * n
    return np.sqrt(s2) * np.sqrt(2 * (n * r**2 + 1) * (np.log(np.sqrt(n * r**2 + 1)) - log_a) / (n * r) ** 2)


def _brute_force_p(estimate: float, se: float, n: int, tuning: float) -> float:
    """The smallest alpha whose sequence excludes 0: scan a grid of ln(alpha), then bisect the first crossing."""
    if estimate == 0:
        return 1.0
    logs = np.linspace(math.log(np.finfo(float).tiny), -1e-12, 20001)
    excluded = _api_half_width(se, n, np.exp(logs), tuning, logs) < abs(estimate)
    if not excluded.any():
        return 1.0
    first = int(np.argmax(excluded))
    if first == 0:
        return 0.0
    lo, hi = logs[first - 1], logs[first]  # lo does not exclude 0, hi does
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (lo, mid) if _api_half_width(se, n, math.exp(mid), tuning, mid) < abs(estimate) else (mid, hi)
    return math.exp(hi)


@pytest.mark.parametrize("seed", SEEDS)
def test_confidence_sequence_matches_the_published_formula(seed):
    rng = np.random.default_rng(seed)
    se, n = float(rng.lognormal(0, 3)), int(rng.choice([2, 17, 500, 10**5, 10**9]))
    alpha, tuning = float(rng.choice([1e-6, 0.01, 0.05, 0.2, 0.9])), float(rng.choice([1.0, 100.0, 5000.0, 1e9]))
    estimate = float(rng.normal(0, 5))
    r = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    assert rho(alpha, tuning) == pytest.approx(r, rel=1e-12)
    ref = float(_api_half_width(se, n, alpha, tuning))
    assert half_width(se, n, alpha, tuning) == pytest.approx(ref, rel=1e-12)
    cs = confidence_sequence(estimate, se, n, alpha, tuning)
    assert (cs.low, cs.high) == pytest.approx((estimate - ref, estimate + ref), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_always_valid_p_value_matches_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    se, n, tuning = float(rng.lognormal(0, 2)), int(rng.choice([2, 40, 1000, 10**6])), float(rng.choice([10.0, 5000.0, 1e6]))
    z = float(rng.choice([0.0, 0.5, 2.0, 4.0, 8.0, 40.0, 400.0]))
    estimate = z * se * rng.choice([-1, 1]) * math.sqrt(1 + tuning / (2 * n))
    ours = always_valid_p_value(estimate, se, n, tuning)
    ref = _brute_force_p(estimate, se, n, tuning)
    assert ours == pytest.approx(ref, rel=REL, abs=1e-300)
    if 0 < ours < 1:  # the sequence at alpha = p just touches 0
        assert half_width(se, n, ours, tuning) == pytest.approx(abs(estimate), rel=1e-9)


def test_always_valid_p_value_edges():
    assert always_valid_p_value(0.0, 1.0, 100, 5000) == 1.0
    assert always_valid_p_value(0.3, 0.0, 100, 5000) == 0.0
    assert always_valid_p_value(1e6, 1e-3, 100, 5000) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        half_width(1.0, 10, 1.0, 5000)


def _sequential_reference(binary: bool, offset: float, alpha: float, tuning: float) -> Callable[[list[np.ndarray]], Figures]:
    def reference(arms: list[np.ndarray]) -> Figures:
        out: Figures = {k: [] for k in ("diff", "lo", "hi", "lift", "lift_lo", "lift_hi", "p", "chance")}
        c = arms[0]
        for t in arms[1:]:
            row: dict[str, float | None] = dict.fromkeys(out)
            row["diff"] = d = float(t.mean() - c.mean())
            n = len(c) + len(t)
            se = _unpooled_se(c, t, binary)
            if se is not None and se > 0:
                half = float(_api_half_width(se, n, alpha, tuning))
                row["lo"], row["hi"], row["p"] = d - half, d + half, _brute_force_p(d, se, n, tuning)
            lift = _t_lift(c, t, offset, binary)
            if lift is not None:
                row["lift"] = lift[0]
            # A sequence needs some variation: in the lift's se, or else in the difference's (then it has no width).
            if lift is not None and lift[1] is not None and (lift[1] > 0 or (se is not None and se > 0)):
                half = float(_api_half_width(lift[1], n, alpha, tuning))
                row["lift_lo"], row["lift_hi"] = lift[0] - half, lift[0] + half
            for k in out:
                out[k].append(row[k])
        return out

    return reference


@pytest.mark.parametrize("seed", SEEDS)
def test_sequential_analysis_matches_references(seed):
    binary = seed % 3 == 0
    arms, offset = (_binary(seed), 0.0) if binary else _continuous(seed)
    summaries = [(f"a{i}", ArmSummary.binary(len(a), int(a.sum())) if binary else ArmSummary.of_values(a + offset)) for i, a in enumerate(arms)]
    tuning = (5000.0, 100.0, 1e6)[seed % 3]
    result = analyse(summaries, "binary" if binary else "continuous", 0.05, "holm", sequential=True, tuning=tuning)
    assert result.test == ("two_proportion_z_sequential" if binary else "welch_t_sequential")
    reference = _sequential_reference(binary, offset, 0.05, tuning)
    _check_analysis(result, reference(arms), _slack(reference, arms, offset), "holm", 0.05)
    for arm in result.arms[1:]:
        if arm.p_value is not None:  # p < alpha exactly when the sequence at alpha excludes 0
            assert (arm.p_value < 0.05) == (arm.diff_ci.low > 0 or arm.diff_ci.high < 0)


def _ever_significant(looks: int, per_look: int, draw: Callable[[np.random.Generator, int], np.ndarray], experiments: int, seed: int) -> tuple[float, float]:
    """Shares of A/A experiments that a fixed-horizon interval and the confidence sequence ever call significant."""
    rng = np.random.default_rng(seed)
    data = draw(rng, experiments * 2 * looks * per_look).reshape(experiments, 2, looks * per_look)
    fixed = np.zeros(experiments, dtype=bool)
    sequential = np.zeros(experiments, dtype=bool)
    z = sps.norm.isf(0.025)
    for k in range(1, looks + 1):
        n = k * per_look
        seen = data[:, :, :n]
        means, variances = seen.mean(axis=2), seen.var(axis=2, ddof=1)
        diff = means[:, 1] - means[:, 0]
        se = np.sqrt(variances.sum(axis=1) / n)
        fixed |= np.abs(diff) > z * se  # the fixed-horizon interval, checked at every look
        for e in np.flatnonzero(~sequential & (se > 0)):
            cs = confidence_sequence(float(diff[e]), float(se[e]), 2 * n, 0.05, 5000.0)
            sequential[e] = cs.low > 0 or cs.high < 0
    return float(fixed.mean()), float(sequential.mean())


@pytest.mark.parametrize(
    "draw, experiments",
    [(lambda rng, size: (rng.random(size) < 0.1).astype(float), 1000), (lambda rng, size: rng.normal(3.0, 2.0, size), 600)],
    ids=["bernoulli", "normal"],
)
def test_peeking_at_confidence_sequences_keeps_the_false_positive_rate(draw, experiments):
    fixed, sequential = _ever_significant(20, 100, draw, experiments, seed=2024)
    tolerance = 3 * math.sqrt(0.05 * 0.95 / experiments)
    assert sequential <= 0.05 + tolerance
    assert fixed > 0.05 + tolerance  # peeking at fixed-horizon intervals inflates it (to about 0.25 here)


def test_sequential_end_to_end_on_peeked_a_a_data_agrees_with_its_intervals():
    rng = np.random.default_rng(5)
    for _ in range(10):
        c, t = rng.random(2000) < 0.1, rng.random(2000) < 0.1
        for n in (100, 700, 2000):
            result = analyse([("c", ArmSummary.binary(n, int(c[:n].sum()))), ("t", ArmSummary.binary(n, int(t[:n].sum())))], "binary", sequential=True)
            arm = result.arms[1]
            wald = wald_difference(int(c[:n].sum()), n, int(t[:n].sum()), n, 0.05)
            assert arm.diff_ci.low < wald.low and arm.diff_ci.high > wald.high  # always wider than the fixed interval
            assert (arm.p_value < 0.05) == (arm.diff_ci.low > 0 or arm.diff_ci.high < 0)


# ---------- 4. CUPED ----------


def _cuped_data(seed: int) -> tuple[list[np.ndarray], list[np.ndarray], float, float]:
    """Per arm the covariate x and outcome y, both minus their offsets, and the offsets."""
    rng = np.random.default_rng(900 + seed)
    off_x, off_y = (0.0, 1e6, 1e9)[seed % 3], OFFSETS[seed % len(OFFSETS)]
    binary = seed % 4 == 1
    xs, ys = [], []
    for n in _sizes(rng, int(rng.integers(2, 6))):
        x = rng.lognormal(0, float(rng.choice([0.5, 2.0])), n) if seed % 2 else rng.poisson(3, n).astype(float)
        noise = rng.normal(0, rng.uniform(0.2, 3), n)
        if binary:
            y = (x + noise > 3).astype(float)
        else:
            y = rng.uniform(0.2, 2) * x + noise + rng.normal(0, 0.3)
        xs.append((off_x + x) - off_x)
        ys.append((off_y + y) - off_y)
    return xs, ys, off_x, off_y


def _cuped_reference(xs: list[np.ndarray], ys: list[np.ndarray], off_y: float) -> Figures:
    x, y = np.concatenate(xs), np.concatenate(ys)
    dx = x - x.mean()
    theta = float(dx @ (y - y.mean()) / (dx @ dx))
    adjusted = [yy - theta * (xx - x.mean()) for xx, yy in zip(xs, ys)]
    every = np.concatenate(adjusted)
    return {
        "theta": [theta],
        "reduction": [float(1 - every.var() / y.var())],
        "mean": [float(a.mean()) + off_y for a in adjusted],
        "variance": [float(a.var(ddof=1)) if len(a) > 1 else None for a in adjusted],
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_cuped_matches_numpy_on_raw_users(seed):
    xs, ys, off_x, off_y = _cuped_data(seed)
    result = cuped([CupedArm.of_values(x + off_x, y + off_y) for x, y in zip(xs, ys)])
    ref = _cuped_reference(xs, ys, off_y)
    # Slack: what moving each arm's x and y by 4 ulps of their offsets moves in the reference.
    slack: Figures = {k: [0.0] * len(v) for k, v in ref.items()}
    for j in range(len(xs)):
        for values, off in ((xs, off_x), (ys, off_y)):
            if off:
                moved = [v + 4 * float(np.spacing(off)) if i == j else v for i, v in enumerate(values)]
                other = _cuped_reference(moved, ys, off_y) if values is xs else _cuped_reference(xs, moved, off_y)
                for k in ref:
                    slack[k] = [s + (abs(m - r) if r is not None else 0.0) for s, m, r in zip(slack[k], other[k], ref[k])]  # type: ignore[operator]
    if off_y:
        slack["mean"] = [s + 4 * float(np.spacing(off_y)) for s in slack["mean"]]
    _close(result.theta, ref["theta"][0], slack["theta"][0])
    _close(result.variance_reduction, ref["reduction"][0], slack["reduction"][0])
    for arm, mean, var, s_mean, s_var in zip(result.adjusted, ref["mean"], ref["variance"], slack["mean"], slack["variance"]):
        _close(arm.mean, mean, s_mean)
        _close(arm.variance, var, s_var)


def _exact_cuped(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[Fraction, list[Fraction]]:
    """theta and each arm's mean of y - theta (x - xbar), in exact arithmetic on the doubles given."""
    xs_, ys_ = [[Fraction(float(v)) for v in x] for x in xs], [[Fraction(float(v)) for v in y] for y in ys]
    every_x, every_y = [v for x in xs_ for v in x], [v for y in ys_ for v in y]
    mx, my = sum(every_x) / len(every_x), sum(every_y) / len(every_y)
    theta = sum((a - mx) * (b - my) for a, b in zip(every_x, every_y)) / sum((a - mx) ** 2 for a in every_x)
    return theta, [sum(b - theta * (a - mx) for a, b in zip(x, y)) / len(x) for x, y in zip(xs_, ys_)]


@pytest.mark.parametrize("offset", [1e9, 1e11, -1e12])
def test_cuped_far_from_zero_keeps_theta_and_the_adjusted_differences_to_the_last_digits(offset):
    # Each arm's means had been kept only as rounded doubles: at 1e11 an ulp is 1.5e-5, and the arms'
    # means differ by tenths, so theta lost 7 digits and the p-value its fourth.
    rng = np.random.default_rng(11)
    hs = [rng.normal(size=30) for _ in range(3)]
    xs = [offset + h for h in hs]
    ys = [offset + 0.5 * h + rng.normal(size=30) + shift for h, shift in zip(hs, (0.0, 0.1, -0.05))]
    result = cuped([CupedArm.of_values(x, y) for x, y in zip(xs, ys)])
    theta, means = _exact_cuped(xs, ys)
    assert result.theta == pytest.approx(float(theta), rel=1e-12)
    for arm, mean in zip(result.adjusted[1:], means[1:]):
        assert arm.mean_difference(result.adjusted[0]) == pytest.approx(float(mean - means[0]), rel=1e-10, abs=1e-12)


def test_cuped_without_pre_period_variation_leaves_y_alone():
    arms = [CupedArm.of_values(np.full(n, 2.0), np.arange(n, dtype=float)) for n in (5, 8, 1)]
    result = cuped(arms)
    assert result.theta is None and result.variance_reduction is None and "no pre-period variation" in result.note
    assert [a.mean for a in result.adjusted] == [2.0, 3.5, 0.0]
    summaries = [(f"a{i}", ArmSummary.of_values(np.arange(n, dtype=float))) for i, n in enumerate((5, 8, 1))]
    plain, skipped = analyse(summaries, "continuous"), analyse(summaries, "continuous", cuped=result)
    assert skipped.arms == plain.arms and skipped.test == "welch_t" and "no pre-period variation" in skipped.notes[0]
    assert cuped([CupedArm(0, 0.0, 0.0, 0.0, 0.0, 0.0)] * 2).theta is None


def _widening_reference(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    """From raw users: how many times y' = y - theta (x - xbar) widens the worst arm's own standard error."""
    x, y = np.concatenate(xs), np.concatenate(ys)
    theta = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    floor = min(float(b.var(ddof=1)) for b in ys if b.var() > 0)
    return max(math.sqrt(float((b - theta * (a - x.mean())).var(ddof=1)) / (float(b.var(ddof=1)) or floor)) for a, b in zip(xs, ys))


@pytest.mark.parametrize("arms, whale", [(3, 2), (3, 0), (2, 1), (2, 0)])
def test_an_outlier_that_would_widen_an_arm_many_times_leaves_cuped_off(arms, whale):
    rng = np.random.default_rng(11)
    xs = [rng.gamma(2.0, 50.0, 200) for _ in range(arms)]
    ys = [0.5 * x + rng.gamma(2.0, 20.0, len(x)) for x in xs]
    applied = cuped([CupedArm.of_values(x, y) for x, y in zip(xs, ys)])
    assert applied.theta is not None and _widening_reference(xs, ys) < 1.05
    # One purchase near the 1e12 bound from a user who had bought before, in a treatment arm or the control:
    # theta follows that one user.
    xs[whale][0], ys[whale][0] = 5_000.0, 9.99e11
    assert _widening_reference(xs, ys) > 1e4
    skipped = cuped([CupedArm.of_values(x, y) for x, y in zip(xs, ys)])
    assert skipped.theta is None and skipped.variance_reduction is None
    assert "would widen an arm's standard error" in skipped.note
    assert [a.mean for a in skipped.adjusted] == pytest.approx([float(y.mean()) for y in ys], rel=1e-12)
    summaries = [(f"a{i}", ArmSummary.of_values(y)) for i, y in enumerate(ys)]
    assert analyse(summaries, "continuous", cuped=skipped).arms == analyse(summaries, "continuous").arms


def test_rare_conversions_leaving_two_arms_without_any_still_get_cuped():
    rng = np.random.default_rng(1)
    xs = [(rng.random(300) < 0.3) * 1.0 for _ in range(3)]
    ys = [np.zeros(300) for _ in range(3)]
    ys[2][:3], xs[2][:3] = 1.0, 1.0
    result = cuped([CupedArm.of_values(x, y) for x, y in zip(xs, ys)])
    assert result.theta is not None and _widening_reference(xs, ys) < MAX_WIDENING


def test_cuped_that_would_give_spread_where_no_arm_has_any_is_skipped():
    # Control and treatment each constant (0 and 1 conversions) but pre-periods differ: any theta adds
    # spread where there was none, so the comparison would go from exact to uncertain.
    xs = [np.array([0.0, 1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0, 7.0])]
    ys = [np.zeros(4), np.ones(4)]
    result = cuped([CupedArm.of_values(x, y) for x, y in zip(xs, ys)])
    assert result.theta is None and "whose outcome does not vary" in result.note


@pytest.mark.parametrize("scale", [3.0, 7.3, 1e6])
def test_a_covariate_that_predicts_the_outcome_exactly_leaves_no_variance_and_no_interval(scale):
    rng = np.random.default_rng(3)
    xs = [rng.gamma(2.0, 10.0, n) for n in (40, 55)]
    result = cuped([CupedArm.of_values(x, scale * x) for x in xs])
    assert result.variance_reduction == 1.0
    assert [a.variance for a in result.adjusted] == [0.0, 0.0]  # not the few ulps the three-term formula leaves
    arm = analyse([(f"a{i}", ArmSummary.of_values(scale * x)) for i, x in enumerate(xs)], "continuous", cuped=result).arms[1]
    assert arm.diff_ci is None and arm.p_value is None and arm.notes


@pytest.mark.parametrize("seed", SEEDS[:12])
@pytest.mark.parametrize("sequential", [False, True])
def test_analysis_on_cuped_outcomes_is_welch_on_the_adjusted_values(seed, sequential):
    xs, ys, _, _ = _cuped_data(4 * seed + 1)  # binary outcomes: the figures switch to Welch's
    result = cuped([CupedArm.of_values(x, y) for x, y in zip(xs, ys)])
    raw = [(f"a{i}", ArmSummary.binary(len(y), int(y.sum()))) for i, y in enumerate(ys)]
    analysis = analyse(raw, "binary", 0.05, "holm", sequential=sequential, cuped=result)
    assert analysis.test == "welch_t_cuped" + ("_sequential" if sequential else "")
    theta = _cuped_reference(xs, ys, 0.0)["theta"][0]
    xbar = np.concatenate(xs).mean()
    adjusted = [y - theta * (x - xbar) for x, y in zip(xs, ys)]
    reference = (_sequential_reference(False, 0.0, 0.05, 5000.0) if sequential else _fixed_reference(False, 0.0, 0.05))(adjusted)
    zero = {k: [0.0] * len(v) for k, v in reference.items()}
    _check_analysis(analysis, reference, zero, "holm", 0.05)
    for arm, (_, summary), values in zip(analysis.arms, raw, adjusted):
        assert arm.total == summary.total  # the raw total; every other figure is of y'
        _close(arm.mean, float(values.mean()))
        if len(values) > 1 and values.var() > 0:
            lo, hi = sps.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sps.sem(values))
            _close(arm.ci.low, lo, 1e-12)
            _close(arm.ci.high, hi, 1e-12)


# ---------- 5. inverse propensity estimates ----------


def _logged(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float]:
    """Logged users of an adaptive allocation: arm, propensity of that arm, outcome - offset; the arm count and offset."""
    rng = np.random.default_rng(300 + seed)
    k = int(rng.integers(2, 6))
    n = int(rng.choice([1, 2, 3, int(rng.integers(4, 4000))]))
    offset = OFFSETS[seed % len(OFFSETS)] if seed % 4 != 1 else 0.0
    # Each user's allocation drifts, as a bandit's does; a floor keeps every propensity positive.
    probs = rng.dirichlet(np.full(k, rng.uniform(0.3, 3)), size=n) * 0.95 + 0.05 / k
    arm = np.array([rng.choice(k, p=p) for p in probs])
    p = probs[np.arange(n), arm]
    if seed % 4 == 1:
        rates = rng.choice([0.0, 1.0, 0.1, 0.3], size=k)
        y = (rng.random(n) < rates[arm]).astype(float)
    else:
        y = (offset + rng.lognormal(0.5 * arm, 2.0)) - offset
    return arm, p, y, k, offset


def _ipw_reference(z: np.ndarray, w: np.ndarray, y: np.ndarray, n_total: int, alpha: float) -> dict[str, float | None]:
    """IPW from Z_i over all N users; SNIPW from the weights and outcomes of the users with weight."""
    q = sps.norm.isf(alpha / 2)
    out: dict[str, float | None] = dict.fromkeys(("ipw", "ipw_half", "snipw", "snipw_half"))
    out["ipw"] = float(z.sum() / n_total)
    if n_total > 1 and len(w) > 0 and z.any():  # every Z_i 0 (nobody given the arm, or no outcome yet): no interval
        out["ipw_half"] = float(q * z.std(ddof=1) / math.sqrt(n_total))
    if w.sum() > 0:
        m = float(w @ y / w.sum())
        out["snipw"] = m
        if len(w) > 1 and np.ptp(y) > 0:  # outcomes all alike: no spread, no interval
            out["snipw_half"] = float(q * math.sqrt(np.sum(w**2 * (y - m) ** 2)) / w.sum())
    return out


def _check_ipw(mean, ci, centre: float | None, half: float | None, offset: float, centred: float, conditioning: float = 1.0) -> None:
    """Centres to 1e-9 plus 8 ulps of the offset; half-widths to 1e-9, loosened by how badly the sums condition them.

    `centred` is the centre measured from the offset: numpy's own two-pass spread keeps an error of
    about eps times it (a spread of 0 comes out as 1e-17).
    """
    _close(mean, centre, 8 * float(np.spacing(offset)))
    if half is None:
        assert ci is None
        return
    _close((ci.high - ci.low) / 2, half, 8 * float(np.spacing(offset)) + 1e-15 * abs(half) * conditioning + 1e-14 * abs(centred))


@pytest.mark.parametrize("seed", SEEDS)
def test_ipw_arm_matches_numpy_on_logged_users(seed):
    arm, p, y, k, offset = _logged(seed)
    n = len(arm)
    for a in range(k):
        mine = arm == a
        est = ipw_arm(PropensitySums.of_values(p[mine], y[mine] + offset), n, 0.05)
        z = np.where(mine, (y + offset) / p, 0.0)
        # Definitions as API.md gives them, on values - offset (exact) to keep numpy's own rounding out.
        ref = _ipw_reference(np.where(mine, y / p, 0.0), 1 / p[mine], y[mine], n, 0.05)
        ref_ipw = float(np.sum((y[mine] + offset) / p[mine]) / n)
        assert est.ipw_mean == pytest.approx(ref_ipw, rel=REL)
        # Sum Z^2 - N mean^2 cancels by sum Z^2 / sum (Z - mean)^2; that ratio bounds the half-width's error.
        conditioning = float(z @ z / max(np.sum((z - z.mean()) ** 2), 1e-300))
        ref_half = None if n < 2 or not z.any() else float(sps.norm.isf(0.025) * z.std(ddof=1) / math.sqrt(n))
        _check_ipw(est.ipw_mean, est.ipw_ci, ref_ipw, ref_half, offset, ref["ipw"], conditioning)
        _check_ipw(est.snipw_mean, est.snipw_ci, None if ref["snipw"] is None else ref["snipw"] + offset, ref["snipw_half"], offset, ref["snipw"] or 0.0)
        if est.snipw_mean is None or est.snipw_ci is None or est.ipw_ci is None:
            assert est.notes


@pytest.mark.parametrize("seed", [s for s in SEEDS if s % len(OFFSETS) < 2])
def test_sums_around_zero_give_the_same_estimates(seed):
    arm, p, y, k, _ = _logged(seed)
    for a in range(k):
        mine = arm == a
        around_mean, around_zero = (ipw_arm(PropensitySums.of_values(p[mine], y[mine], s), len(arm), 0.1) for s in (None, 0.0))
        for name in ("ipw_mean", "snipw_mean"):
            _close(getattr(around_zero, name), getattr(around_mean, name), 1e-12)
        for name in ("ipw_ci", "snipw_ci"):
            if getattr(around_mean, name) is not None:
                _close(getattr(around_zero, name).low, getattr(around_mean, name).low, 1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_evaluate_allocation_matches_numpy_on_logged_users(seed):
    arm, p, y, k, offset = _logged(seed)
    rng = np.random.default_rng(seed)
    target = rng.dirichlet(np.ones(k)) * (rng.random(k) < 0.7)
    target = list(target / target.sum()) if target.sum() > 0 else [1.0] + [0.0] * (k - 1)
    sums = [PropensitySums.of_values(p[arm == a], y[arm == a] + offset) for a in range(k)]
    value = evaluate_allocation(sums, target, len(arm), 0.05)
    w = np.asarray(target)[arm] / p
    z = w * (y + offset)
    ref = _ipw_reference(w * y, w[w > 0], y[w > 0], len(arm), 0.05)
    ref_ipw = float(z.sum() / len(arm))
    conditioning = float(z @ z / max(np.sum((z - z.mean()) ** 2), 1e-300))
    ref_half = None if len(arm) < 2 or not z.any() else float(sps.norm.isf(0.025) * z.std(ddof=1) / math.sqrt(len(arm)))
    assert value.ipw == pytest.approx(ref_ipw, rel=REL)
    _check_ipw(value.ipw, value.ipw_ci, ref_ipw, ref_half, offset, ref["ipw"], conditioning)
    _check_ipw(value.snipw, value.snipw_ci, None if ref["snipw"] is None else ref["snipw"] + offset, ref["snipw_half"], offset, ref["snipw"] or 0.0)
    ess = w.sum() ** 2 / (w**2).sum() if (w**2).sum() > 0 else None
    _close(value.effective_sample_size, ess)


def test_evaluating_the_logging_policy_itself_recovers_the_plain_mean():
    # Uniform logging, uniform target: every weight is 1, so SNIPW is the mean and the ESS is N.
    rng = np.random.default_rng(3)
    arm, y = rng.integers(0, 3, 600), rng.lognormal(0, 2, 600)
    sums = [PropensitySums.of_values(np.full((arm == a).sum(), 1 / 3), y[arm == a]) for a in range(3)]
    value = evaluate_allocation(sums, [1 / 3] * 3, 600, 0.05)
    assert value.snipw == pytest.approx(y.mean(), rel=REL) and value.ipw == pytest.approx(y.mean(), rel=REL)
    assert value.effective_sample_size == pytest.approx(600, rel=REL)


def test_ipw_degenerate_cases_give_notes_not_nan():
    empty = PropensitySums(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    est = ipw_arm(empty, 0, 0.05)
    assert (est.ipw_mean, est.ipw_ci, est.snipw_mean, est.snipw_ci) == (None, None, None, None) and est.notes
    one = ipw_arm(PropensitySums.of_values([0.5], [3.0]), 1, 0.05)
    assert one.ipw_mean == 6.0 and one.snipw_mean == 3.0 and one.ipw_ci is None and one.snipw_ci is None and one.notes
    value = evaluate_allocation([empty, PropensitySums.of_values([0.5], [3.0])], [1.0, 0.0], 1, 0.05)
    assert value.snipw is None and value.effective_sample_size is None and value.ipw == 0.0
    with pytest.raises(ValueError, match="total_users"):
        ipw_arm(PropensitySums.of_values([0.5, 0.5], [1.0, 2.0]), 1, 0.05)
    with pytest.raises(ValueError, match="target"):
        evaluate_allocation([empty], [1.0, 0.0], 0, 0.05)


def test_best_arm_target():
    assert best_arm_target([0.1, 0.3, None, 0.2]) == [0.0, 1.0, 0.0, 0.0]
    assert best_arm_target([0.3, 0.1, 0.3]) == [1.0, 0.0, 0.0]
    assert best_arm_target([None, 0.0]) == [0.0, 1.0]
    assert best_arm_target([None, None]) == [0.0, 0.0]


# ---------- 6. planning ----------


def _binary_users(p1: float, effect: float, a: float, power: float) -> float:
    za, zb = sps.norm.ppf(1 - a / 2), sps.norm.ppf(power)
    p2 = p1 + effect
    pbar = (p1 + p2) / 2
    return (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / effect**2


@pytest.mark.parametrize("seed", SEEDS)
def test_plan_matches_the_formula_and_statsmodels(seed):
    rng = np.random.default_rng(seed)
    arms, correction = int(rng.integers(2, 6)), str(rng.choice(["holm", "bonferroni", "none"]))
    alpha, power = float(rng.choice([0.01, 0.05, 0.1])), float(rng.uniform(0.7, 0.95))
    a = alpha / (arms - 1) if arms > 2 and correction != "none" else alpha
    daily = float(rng.choice([50.0, 1234.5])) if seed % 2 else None
    p1, relative = float(rng.uniform(0.01, 0.5)), float(rng.uniform(0.05, 0.5))
    plan = plan_sample_size("binary", p1, None, relative, "relative", alpha, power, arms, correction, daily)
    expected = _binary_users(p1, relative * p1, a, power)
    assert plan.users_per_arm == math.ceil(expected)
    assert plan.alpha_per_test == pytest.approx(a, rel=1e-15) and plan.total_users == plan.users_per_arm * arms
    assert plan.days == (None if daily is None else math.ceil(plan.total_users / daily))
    assert (plan.note is not None) == (a != alpha)
    sd = float(rng.lognormal(0, 1))
    mde = sd * float(rng.uniform(0.02, 0.5))  # effect sizes statsmodels' solver handles
    plan = plan_sample_size("continuous", 12.0, sd, mde, "absolute", alpha, power, arms, correction, daily)
    reference = NormalIndPower().solve_power(effect_size=mde / sd, alpha=a, power=power, ratio=1.0)
    # statsmodels also counts the far tail's sliver of power; that moves n by far less than 1e-4 here.
    assert reference * (1 - 1e-4) <= plan.users_per_arm < reference * (1 + 1e-4) + 1
    assert plan.users_per_arm == math.ceil(2 * sd**2 * (sps.norm.ppf(1 - a / 2) + sps.norm.ppf(power)) ** 2 / mde**2)
    relative_plan = plan_sample_size("continuous", 4.0, sd, mde / 4.0, "relative", alpha, power, arms, correction, daily)
    assert abs(relative_plan.users_per_arm - plan.users_per_arm) <= 1


@pytest.mark.parametrize(
    "question, exact",
    [
        # Power far below alpha: z(power) from 1 - power had lost digits (1,843,966 for 1,844,084.18...).
        ({"metric_kind": "continuous", "baseline": 0.0, "sd": 1.0, "mde": 0.0001, "alpha": 1e-12, "power": 1e-12},
         2 * (sps.norm.isf(5e-13) + sps.norm.ppf(1e-12)) ** 2 / 1e-8),
        # A tiny effect near 1: (baseline + mde) - baseline keeps few of the mde's digits.
        ({"metric_kind": "binary", "baseline": 0.999999, "mde": 1e-7}, _binary_users(0.999999, 1e-7, 0.05, 0.8)),
        ({"metric_kind": "binary", "baseline": 0.7, "mde": 1e-5}, _binary_users(0.7, 1e-5, 0.05, 0.8)),
    ],
)
def test_plans_at_the_edges_keep_their_digits(question, exact):
    asked = {"metric_kind": "binary", "baseline": 0.1, "sd": None, "mde_type": "absolute", "alpha": 0.05, "power": 0.8, "arms": 2, "correction": "none", "daily_users": None}
    assert plan_sample_size(**{**asked, **question}).users_per_arm == math.ceil(exact)


def test_a_power_at_or_below_half_alpha_is_refused_for_every_kind_of_metric():
    # The test rejects that often with no users at all; the formula's square would hide the sign.
    asked = {"sd": None, "mde_type": "absolute", "alpha": 0.05, "power": 0.01, "arms": 2, "correction": "none", "daily_users": None}
    for question in ({"metric_kind": "binary", "baseline": 0.31, "mde": 0.01}, {"metric_kind": "binary", "baseline": 0.01, "mde": 0.98},
                     {"metric_kind": "continuous", "baseline": 0.0, "sd": 1.0, "mde": 0.1}):
        with pytest.raises(ValueError, match=r"^power: must exceed alpha_per_test / 2 \(0.025\), got 0.01$"):
            plan_sample_size(**{**asked, **question})
    # A relative mde whose product with the baseline underflows is too small, not a baseline of 0.
    with pytest.raises(ValueError, match="^mde: .*too small to detect"):
        plan_sample_size(**{**asked, "power": 0.8, "metric_kind": "continuous", "baseline": 1e-300, "sd": 5.0, "mde": 1e-300, "mde_type": "relative"})


def test_plan_textbook_case_and_the_old_helpers_agree():
    plan = plan_sample_size("binary", 0.10, None, 0.02, "absolute", 0.05, 0.8, 2, "holm", 1000.0)
    assert (plan.users_per_arm, plan.total_users, plan.days, plan.note) == (3841, 7682, 8, None)
    assert plan.users_per_arm == users_per_arm_proportion(0.10, 0.02)
    assert plan_sample_size("continuous", 0.0, 4.0, 0.5, "absolute", 0.05, 0.9, 2, "none", None).users_per_arm == users_per_arm_mean(4.0, 0.5, power=0.9)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"baseline": 0.95, "mde": 0.1}, "mde"),
        ({"baseline": 0.0}, "baseline"),
        ({"baseline": 1.2}, "baseline"),
        ({"mde": 0.5, "mde_type": "relative", "baseline": 0.8}, "mde"),
        ({"metric_kind": "continuous", "sd": None}, "sd"),
        ({"metric_kind": "continuous", "sd": -1.0}, "sd"),
        ({"metric_kind": "continuous", "sd": 1.0, "baseline": 0.0, "mde_type": "relative"}, "baseline"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"power": 0.0}, "power"),
        ({"power": 0.01, "alpha": 0.9}, "power"),
        ({"mde": float("inf")}, "mde"),
        ({"mde": -0.01}, "mde"),
        ({"mde": 1e-9}, "mde"),
        ({"metric_kind": "continuous", "sd": 1e300, "mde": 1e-300}, "mde"),
        ({"arms": 1}, "arms"),
        ({"arms": 2.5}, "arms"),
        ({"daily_users": 0.0}, "daily_users"),
        ({"daily_users": 1e-300}, "daily_users"),
        ({"correction": "bh"}, "correction"),
        ({"metric_kind": "ratio"}, "metric_kind"),
        ({"mde_type": "percent"}, "mde_type"),
    ],
)
def test_impossible_plans_name_the_field(kwargs, field):
    question = {"metric_kind": "binary", "baseline": 0.1, "sd": None, "mde": 0.01, "mde_type": "absolute", "alpha": 0.05, "power": 0.8, "arms": 2, "correction": "holm", "daily_users": None}
    question.update(kwargs)
    with pytest.raises(ValueError, match=f"^{field}: "):
        plan_sample_size(**question)


@pytest.mark.parametrize("sequential", [False, True])
def test_without_any_variation_no_interval_is_claimed_fixed_or_sequential(sequential):
    # Every user alike in both arms: the standard error is 0, so neither the difference nor the lift
    # has an interval (an interval of no width would claim certainty), and the chance is left open.
    same = [("a0", ArmSummary.of_values(np.full(20, 7.5))), ("a1", ArmSummary.of_values(np.full(30, 7.5)))]
    arm = analyse(same, "continuous", 0.05, "holm", sequential=sequential).arms[1]
    assert (arm.diff, arm.lift, arm.diff_ci, arm.lift_ci, arm.chance_to_beat_control) == (0.0, 0.0, None, None, None)
    assert arm.notes
    all_converted = [("a0", ArmSummary.binary(20, 20)), ("a1", ArmSummary.binary(30, 30))]
    arm = analyse(all_converted, "binary", 0.05, "holm", sequential=sequential).arms[1]
    assert (arm.diff, arm.lift, arm.diff_ci, arm.lift_ci) == (0.0, 0.0, None, None) and arm.notes
    if not sequential:  # all converted against none: Wald's interval is the point at the difference, as the contract defines it
        apart = analyse([("a0", ArmSummary.binary(20, 20)), ("a1", ArmSummary.binary(30, 0))], "binary", 0.05, "holm").arms[1]
        assert (apart.diff_ci.low, apart.diff_ci.high, apart.significant) == (-1.0, -1.0, True)


@pytest.mark.parametrize("control, treat, thin", [
    ((14, 0), (6, 3), "the control has 0 conversions of 14 and this arm has 3 conversions of 6"),
    ((400, 40), (10, 10), "this arm has 10 conversions of 10"),
    ((400, 40), (400, 60), None),
])
def test_arms_with_few_conversions_or_non_conversions_say_the_normal_approximation_is_rough(control, treat, thin):
    result = analyse([("c", ArmSummary.binary(*control)), ("t", ArmSummary.binary(*treat))], "binary")
    notes = [n for n in result.arms[1].notes if "normal approximation" in n]
    assert notes == ([] if thin is None else [notes[0]]) and (thin is None or notes[0].startswith(thin))
    # The figures themselves are the contract's, note or not.
    z = proportions_ztest([treat[1], control[1]], [treat[0], control[0]])[1] if 0 < control[1] + treat[1] < control[0] + treat[0] else None
    if z is not None:
        assert result.arms[1].p_value == pytest.approx(z, rel=1e-9)


def test_a_binary_metric_under_cuped_still_says_when_its_arms_have_few_conversions():
    """CUPED's Welch test on 0 conversions of 3 (adjusted values that barely vary) calls the difference
    significant where Fisher's exact test finds nothing: the note on thin arms must not vanish with it."""
    x = np.tile([5.0, 0.0], 12)[:23]  # every other user bought before exposure
    y_control, y_treat = np.r_[np.ones(10), np.zeros(10)], np.zeros(3)
    adjusted = cuped([CupedArm.of_values(x[:20], y_control), CupedArm.of_values(x[20:], y_treat)])
    arms = [("c", ArmSummary.binary(20, 10)), ("t", ArmSummary.binary(3, 0))]
    arm = analyse(arms, "binary", cuped=adjusted).arms[1]
    assert adjusted.theta is not None and arm.significant and sps.fisher_exact([[10, 10], [0, 3]])[1] > 0.2
    assert arm.rough is not None and arm.rough.startswith("this arm has 0 conversions of 3") and arm.rough in arm.notes
    plain = analyse(arms, "binary").arms[1]
    assert plain.rough == arm.rough and not plain.significant
    assert analyse([("c", ArmSummary.binary(400, 40)), ("t", ArmSummary.binary(400, 60))], "binary").arms[1].rough is None


def test_a_treatment_constant_at_zero_keeps_the_delta_methods_lift_interval():
    control, treat = ArmSummary.of_values(np.array([1.0, 2.0, 3.0, 4.0])), ArmSummary.of_values(np.zeros(3))
    arm = analyse([("c", control), ("t", treat)], "continuous").arms[1]
    assert arm.diff_ci is not None and arm.lift == -1.0
    assert arm.lift_ci is not None and (arm.lift_ci.low, arm.lift_ci.high) == (-1.0, -1.0)  # se = 0 when m_t = v_t = 0
    assert not any("alike" in note for note in arm.notes)


def test_an_ipw_interval_whose_digits_all_cancel_is_left_out_with_a_note():
    rng = np.random.default_rng(5)
    y = 1e9 + rng.normal(size=400)
    arm = rng.integers(0, 2, 400)
    sums = [PropensitySums.of_values(np.full((arm == a).sum(), 0.5), y[arm == a]) for a in range(2)]
    value = evaluate_allocation(sums, [0.5, 0.5], 400, 0.05)  # every weight 1: Z_i = y_i, all near 1e9
    assert value.ipw == pytest.approx(y.mean(), rel=1e-15) and value.ipw_ci is None
    assert any("snipw" in note for note in value.notes)
    half = sps.norm.isf(0.025) * y.std() / math.sqrt(400)  # weights all 1: snipw is the mean, its interval the normal one
    assert value.snipw_ci is not None and value.snipw_ci.high - value.snipw_ci.low == pytest.approx(2 * half, rel=1e-6)


def _sequence_half_width(se: float, n: int, alpha: float, tuning: float) -> float:
    """The confidence sequence's half-width exactly as the API states it, with s2 = se^2 n."""
    r = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    return math.sqrt(se * se * n) * math.sqrt(2 * (n * r * r + 1) * math.log(math.sqrt(n * r * r + 1) / alpha) / (n * r) ** 2)


@pytest.mark.parametrize("variance_sum, effect, alpha, power, tuning", [
    (0.3 * 0.7 + 0.36 * 0.64, 0.06, 0.05, 0.8, 5000.0),
    (0.1 * 0.9 + 0.11 * 0.89, 0.01, 0.05, 0.8, 5000.0),
    (2 * 25.0, 0.5, 0.025, 0.9, 5000.0),
    (2 * 1.0, 0.05, 0.01, 0.95, 100.0),
    (2 * 1.0, 3.0, 0.05, 0.8, 5000.0),  # a huge effect: a handful of users
])
def test_the_sequential_plan_is_the_smallest_size_whose_sequence_finds_the_effect_with_the_power_asked(variance_sum, effect, alpha, power, tuning):
    n = sequential_users_per_arm(variance_sum, effect, alpha, power, tuning)

    def power_at(m: int) -> float:  # P(the sequence at 2m users excludes 0), by the normal approximation
        se = math.sqrt(variance_sum / m)
        return float(sps.norm.sf(_sequence_half_width(se, 2 * m, alpha, tuning) / se - effect / se))

    assert power_at(n) >= power - 1e-9 and (n == 1 or power_at(n - 1) < power)
    fixed = math.ceil(variance_sum * (sps.norm.isf(alpha / 2) + sps.norm.ppf(power)) ** 2 / effect**2)
    assert n >= fixed  # the sequence is wider than the fixed-horizon interval at every size


def test_the_sequential_plan_holds_its_power_when_simulated_with_a_look_every_day():
    # 2,000 simulated tests of a 30 % -> 36 % conversion, read with the sequence after each of 20 equal days:
    # at the planned size the effect is found at least 80 % of the time, and with no effect almost never.
    p1, p2, alpha = 0.30, 0.36, 0.05
    n = sequential_users_per_arm(p1 * (1 - p1) + p2 * (1 - p2), p2 - p1, alpha, 0.8)
    rng = np.random.default_rng(7)
    looks = np.linspace(n / 20, n, 20).round().astype(int)

    def found(rate_b: float) -> float:
        a = rng.binomial(1, p1, size=(2_000, n)).cumsum(axis=1)[:, looks - 1] / looks
        b = rng.binomial(1, rate_b, size=(2_000, n)).cumsum(axis=1)[:, looks - 1] / looks
        se = np.sqrt(a * (1 - a) / looks + b * (1 - b) / looks)
        half = np.array([[_sequence_half_width(s, 2 * m, alpha, 5000.0) for s, m in zip(row, looks)] for row in se])
        return float((np.abs(b - a) > half).any(axis=1).mean())

    assert found(p2) >= 0.80 - 0.02  # 2 standard errors of 2,000 runs
    assert found(p1) <= alpha


@pytest.mark.parametrize("sd, mde", [(1e-300, 1e12), (1e-170, 1.0), (3e-5, 1e-5), (1e12, 1e6)])
def test_a_continuous_plan_depends_on_mde_over_sd_alone_however_small_sd_is(sd, mde):
    # sd squared underflows to 0 below about 1e-162: the plan must not divide by it.
    plan = plan_sample_size("continuous", 0.0, sd, mde, "absolute", 0.05, 0.8, 2, "none", None)
    same = plan_sample_size("continuous", 0.0, 1.0, mde / sd, "absolute", 0.05, 0.8, 2, "none", None) if mde / sd <= 1e12 else None
    assert plan.users_per_arm >= 1 and plan.sequential_users_per_arm is not None and plan.sequential_users_per_arm >= plan.users_per_arm
    if same is not None:
        assert (plan.users_per_arm, plan.sequential_users_per_arm) == (same.users_per_arm, same.sequential_users_per_arm)


def test_a_sequential_plan_beyond_any_population_is_none_while_the_fixed_one_stands():
    # 2.9e12 users per arm at a fixed horizon, 50 arms: read sequentially, more than 1e15 in all.
    plan = plan_sample_size("continuous", 0.0, 1.0, 3.162e-7, "absolute", 0.9, 0.6, 50, "none", 1.0)
    assert plan.users_per_arm == 2_873_452_681_581 and plan.days == plan.total_users
    assert (plan.sequential_users_per_arm, plan.sequential_total_users, plan.sequential_days) == (None, None, None)
    with pytest.raises(ValueError, match="more than 1e"):
        sequential_users_per_arm(2.0, 1e-7, 0.05, 0.8)
    # Up to the ceiling itself: the search's last step is the ceiling, not a power of two past it.
    n = sequential_users_per_arm(2.0, 3.5e-7, 0.05, 0.8)
    assert 2**49 < n <= 10**15  # past the last power of two below the ceiling
