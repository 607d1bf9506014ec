"""Chance to beat control: the posterior probability that an arm's true mean is higher.

Binary metrics use Beta(1 + conversions, 1 + non-conversions) posteriors and
integrate P(theta_t > theta_c) = int f_t(x) F_c(x) dx numerically over the
treatment posterior's mass, which stays accurate at millions of users where
the posteriors are very narrow. Continuous metrics use a normal approximation.
"""
from __future__ import annotations

import math

from scipy import integrate, stats as sps

from experiments.stats.lift import mean_variance
from experiments.stats.summary import ArmSummary

# The treatment's mass left outside the integral at each end. At 1e-13 it had been a visible share of a
# chance of 1e-8 (3e-6 of it) and the whole of one of 5e-15; 1e-30 costs quad a few more points.
_TAIL = 1e-30


def beta_chance_to_beat(x_control: int, n_control: int, x_treat: int, n_treat: int) -> float:
    """P(theta_treat > theta_control) under Beta(1,1) priors."""
    post_c = sps.beta(1 + x_control, 1 + n_control - x_control)
    post_t = sps.beta(1 + x_treat, 1 + n_treat - x_treat)
    lo, hi = float(post_t.ppf(_TAIL)), float(post_t.isf(_TAIL))  # 1 - 1e-30 is 1 as a double: isf, not ppf
    # The control's CDF may jump within the treatment's mass; tell quad where.
    marks = [float(post_c.ppf(q)) for q in (1e-6, 0.5, 1 - 1e-6)]
    points = [m for m in marks if lo < m < hi] or None
    # No absolute tolerance: a chance of 1e-15 is as worth its digits as one of 0.5.
    value, _ = integrate.quad(lambda x: post_t.pdf(x) * post_c.cdf(x), lo, hi, points=points, limit=400, epsabs=0.0, epsrel=1e-12)
    return min(max(value, 0.0), 1.0)


def normal_chance_to_beat(control: ArmSummary, treat: ArmSummary) -> float | None:
    """Phi((m_t - m_c) / sqrt(se_t^2 + se_c^2)); None when a variance is undefined."""
    vc, vt, diff = mean_variance(control, binary=False), mean_variance(treat, binary=False), treat.mean_difference(control)
    if vc is None or vt is None or diff is None:
        return None
    se = math.sqrt(vc + vt)
    if se == 0:  # no variation: a difference is certain, and no difference leaves the question open
        return 1.0 if diff > 0 else 0.0 if diff < 0 else None
    return float(sps.norm.cdf(diff / se))
