"""Per-arm moments of a metric over every exposed user, computed in the database in two passes.

The first pass counts users and sums values (and, for bandits, the inverse
propensity sums); the second sums squared deviations from each arm's mean,
passed back in. Sums of squares taken around zero cancel catastrophically when
values sit far from zero (1e9 + a small spread loses every digit), so the
variance is never derived from them. A user without data counts as 0.

With a CUPED window, each user also gets a covariate x: the same metric from
their events in [exposed_at - window, exposed_at), with its own moments and
the cross moment with the metric.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from experiments.definitions import RETENTION_DAYS
from experiments.stats.ipw import PropensitySums
from experiments.stats.summary import two_sum
from service.store.database import Database
from service.store.sql import USER_VALUE
from service.store.rewards import AFTER_THE_STOP

DAY = 86_400.0
_PURCHASE_VALUE = "CASE WHEN e.type = 'purchase' THEN COALESCE(e.value, 0) ELSE 0 END"
# A purchase with a negative value is a return (as reward actions read it): it nets off revenue, and
# converts nobody.
BOUGHT = "e.type = 'purchase' AND (e.value IS NULL OR e.value >= 0)"
_AFTER = "e.ts >= x.exposed_at"
_BEFORE = "e.ts < x.exposed_at"


def _after_exposure(metric: str) -> str:
    """A built-in metric's per-user value from the user's events after exposure."""
    if metric == "purchase_conversion":
        return f"MAX(CASE WHEN {BOUGHT} AND {_AFTER} THEN 1 ELSE 0 END)"
    if metric == "revenue":
        return f"SUM(CASE WHEN {_AFTER} THEN {_PURCHASE_VALUE} ELSE 0 END)"
    n = RETENTION_DAYS[metric]
    return f"MAX(CASE WHEN e.ts >= x.exposed_at + {n * DAY} AND e.ts < x.exposed_at + {(n + 1) * DAY} THEN 1 ELSE 0 END)"


def _before_exposure(metric: str) -> str:
    """The same metric over the pre-period; for retention, whether the user was active at all before."""
    if metric == "purchase_conversion":
        return f"MAX(CASE WHEN {BOUGHT} AND {_BEFORE} THEN 1 ELSE 0 END)"
    if metric == "revenue":
        return f"SUM(CASE WHEN {_BEFORE} THEN {_PURCHASE_VALUE} ELSE 0 END)"
    return f"MAX(CASE WHEN {_BEFORE} THEN 1 ELSE 0 END)"


# PostgreSQL refuses a product that rounds to 0 ("value out of range: underflow"): the square of one
# stored purchase of 1e-300 had made an experiment's results fail for good. Values and deviations
# smaller than this count as 0 where they are multiplied, on both stores alike: the product of two
# that are not is at least 1e-308, which a double holds, and the square of one that is would add
# less than that to a sum. Sums and means take the values as stored.
TINY = 1e-154
_TINY = repr(TINY)


def _nz(expr: str) -> str:
    """`expr`, or 0 where its magnitude is below _TINY."""
    return f"(CASE WHEN ABS({expr}) < {_TINY} THEN CAST(0 AS DOUBLE PRECISION) ELSE {expr} END)"


# A retention metric counts a user once their day N has ended. Every other metric counts every exposed
# user, also one whose exposure is dated ahead of the server's clock, so that an experiment's users and
# SRM are the same whatever the metric (and a storefront's fast clock loses nobody's purchases).
_MATURE = " AND x.exposed_at <= :mature_before"


def _per_user(metric: str, builtin: bool, cuped: bool, binary: bool) -> str:
    """Every exposed user as (arm, p, v, x); x is 0 without CUPED. A binary reported metric's v is whether the user converted (a total above 0)."""
    if builtin:
        covariate = f"COALESCE({_before_exposure(metric)}, 0)" if cuped else "0"
        rows = (
            f"SELECT x.arm AS arm, x.probability AS p, COALESCE({_after_exposure(metric)}, 0) AS v, {covariate} AS x "
            "FROM exposures x LEFT JOIN events e ON e.user_id = x.user_id AND e.ts >= x.exposed_at - :pre AND e.ts < :until "
            f"WHERE x.experiment_key = :key{_MATURE if metric in RETENTION_DAYS else ''} GROUP BY x.arm, x.user_id, x.probability"
        )
    else:
        total = USER_VALUE.format(t="t")
        value = f"CASE WHEN {total} > 0 THEN 1 ELSE 0 END" if binary else f"COALESCE({total}, 0)"
        rows = (
            f"SELECT x.arm AS arm, x.probability AS p, {value} AS v, 0 AS x FROM exposures x "
            "LEFT JOIN user_metric_totals t ON t.experiment_key = x.experiment_key AND t.metric = :metric "
            "AND t.user_id = x.user_id WHERE x.experiment_key = :key"
        )
    # nv and nx: v and x as factors of a product (see _TINY).
    return f"SELECT q.arm AS arm, q.p AS p, q.v AS v, q.x AS x, {_nz('q.v')} AS nv, {_nz('q.x')} AS nx FROM ({rows}) q"


# One pass of plain sums, enough while the values' spread is not tiny beside their mean.
_SUMS = (
    "SELECT u.arm, COUNT(*), SUM(u.v), SUM(u.x), SUM(CASE WHEN u.v > 0 THEN 1 ELSE 0 END), "
    "SUM(1.0 / u.p), SUM(u.v / u.p), SUM(1.0 / (u.p * u.p)), SUM(u.v / (u.p * u.p)), SUM(u.nv * u.nv / (u.p * u.p)), "
    "SUM(u.nv * u.nv), SUM(u.nx * u.nx), SUM(u.nx * u.nv) FROM ({per_user}) u GROUP BY u.arm"
)
# Otherwise one statement, two passes: the per-user rows are computed once (MATERIALIZED), the arm
# means from them, then the deviations around those means. A plain SUM near 1e15 rounds each value
# by up to 0.06, so the first pass's mean is only a reference point: the deviations' own sum (small
# numbers, summed exactly enough) moves it to the mean, and the moments to it (`_recentred`). The
# propensity-weighted sums are taken of v minus that reference point, which becomes their `shift`.
_MOMENTS = (
    "WITH u AS MATERIALIZED ({per_user}), m AS (SELECT arm, AVG(v) AS mv, AVG(x) AS mx FROM u GROUP BY arm), "
    f"d AS (SELECT u.arm AS arm, u.p AS p, u.v AS v, m.mv AS mv, m.mx AS mx, {_nz('u.v - m.mv')} AS dv, {_nz('u.x - m.mx')} AS dx "
    "FROM u JOIN m ON m.arm = u.arm) "
    "SELECT arm, COUNT(*), MAX(mv), MAX(mx), SUM(CASE WHEN v > 0 THEN 1 ELSE 0 END), "
    "SUM(1.0 / p), SUM(dv / p), SUM(1.0 / (p * p)), SUM(dv / (p * p)), SUM(dv * dv / (p * p)), "
    "SUM(dv * dv), SUM(dx * dx), SUM(dx * dv), SUM(dv), SUM(dx), SUM(v) FROM d GROUP BY arm"
)
# Reported metrics of A/B tests: users come from the exposures, values from the totals, which carry their arm.
_EXPOSED = "SELECT arm, COUNT(*) FROM exposures WHERE experiment_key = :key GROUP BY arm"
_VALUE = USER_VALUE.format(t="t")
_TOTALS = (
    f"SELECT arm, COUNT(*), SUM({_VALUE}), SUM(CASE WHEN {_VALUE} > 0 THEN 1 ELSE 0 END) FROM user_metric_totals t "
    "WHERE experiment_key = :key AND metric = :metric GROUP BY arm"
)
# The deviation r is named once; its square is guarded rather than r itself (see _TINY), which
# evaluates the arms' CASE of means twice a row fewer.
_TOTALS_SECOND = (
    f"SELECT arm, SUM(CASE WHEN ABS(r) < {_TINY} THEN 0 ELSE r * r END), SUM(r) FROM ("
    f"SELECT arm, {_VALUE} - {{mean}} AS r FROM user_metric_totals t WHERE experiment_key = :key AND metric = :metric) d GROUP BY arm"
)


@dataclass(frozen=True)
class ArmMoments:
    """One arm's users, mean and centred second moment of the metric, with the covariate's and the propensity sums."""

    users: int
    total: float
    m2: float
    positives: int
    mean_x: float = 0.0
    m2_x: float = 0.0
    c_xy: float = 0.0
    w: float = 0.0
    wy: float = 0.0
    w2: float = 0.0
    w2y: float = 0.0
    w2y2: float = 0.0
    # The mean moved from a reference by the deviations' sum, where that was computed: `total` stays the
    # plain sum (exact for whole numbers, as SQL and the daily series give it), which far from zero loses
    # digits that the mean must keep.
    centre: float | None = None
    # The weighted sums wy, w2y and w2y2 are of v - shift (see PropensitySums).
    shift: float = 0.0
    # What `centre` could not hold of the mean (see experiments.stats.ArmSummary.residual), and `mean_x` of the covariate's.
    residual: float = 0.0
    residual_x: float = 0.0

    @property
    def mean(self) -> float:
        """The mean per exposed user (0 without users)."""
        if self.centre is not None:
            return self.centre
        return self.total / self.users if self.users else 0.0

    def propensity_sums(self) -> PropensitySums:
        """The inverse-propensity sums the IPW estimates take."""
        return PropensitySums(self.users, self.w, self.wy, self.w2, self.w2y, self.w2y2, self.shift)


def _by_arm(column: str, means: dict[str, float], params: dict[str, Any], name: str) -> str:
    """A CASE that maps each arm to its mean, as bound parameters."""
    if not means:
        return "0"
    cases = []
    for i, (arm, mean) in enumerate(sorted(means.items())):
        params[f"{name}_arm{i}"], params[f"{name}_mean{i}"] = arm, mean
        cases.append(f"WHEN :{name}_arm{i} THEN CAST(:{name}_mean{i} AS DOUBLE PRECISION)")
    return f"CASE {column} {' '.join(cases)} ELSE 0 END"


def _reported_ab(db: Database, params: dict[str, Any]) -> dict[str, ArmMoments]:
    with db.read() as session:
        users = {arm: int(n) for arm, n in session.execute(text(_EXPOSED), params)}
        sums = {r[0]: (int(r[1]), float(r[2] or 0), int(r[3] or 0)) for r in session.execute(text(_TOTALS), params)}
        means = {arm: sums.get(arm, (0, 0.0, 0))[1] / n for arm, n in users.items() if n}
        second_params = dict(params)
        second = text(_TOTALS_SECOND.format(mean=_by_arm("arm", means, second_params, "m")))
        spread = {r[0]: (float(r[1] or 0), float(r[2] or 0)) for r in session.execute(second, second_params)}
    out = {}
    for arm, n in users.items():
        with_data, total, positives = sums.get(arm, (0, 0.0, 0))
        if not n:
            out[arm] = ArmMoments(0, 0.0, 0.0, positives)
            continue
        squares, deviations = spread.get(arm, (0.0, 0.0))
        # Users with no total are zeros: each deviates from the reference mean by -mean.
        reference = means[arm]
        users_without = n - with_data
        mean, m2, residual = _moved(n, reference, squares + users_without * reference * reference, deviations - users_without * reference)
        out[arm] = ArmMoments(n, total, m2, positives, centre=mean, residual=residual)
    return out


def _moved(n: int, reference: float, squares: float, deviations: float) -> tuple[float, float, float]:
    """The mean, the squared deviations from it and what the mean's rounding left out, given sums around a
    `reference` point near the mean.

    Sum((v - m)^2) = Sum((v - r)^2) - n (m - r)^2, with m - r = Sum(v - r) / n: exact algebra, and
    the deviations from r are small numbers wherever the values sit. r + (m - r) rounds to a double;
    the rounding error comes back exactly (Knuth's two-sum), so a difference of two arms' means keeps it.
    """
    shift = deviations / n
    mean, residual = two_sum(reference, shift)
    return mean, max(squares - n * shift * shift, 0.0), residual


def arm_moments(
    db: Database, key: str, metric: str, builtin: bool, bandit: bool, now: float, cuped_days: int | None = None, binary: bool = False,
    until: float | None = None,
) -> dict[str, ArmMoments]:
    """Per-arm moments of a metric over the exposed users; a CUPED covariate for built-in metrics when `cuped_days` is given.

    `bandit` adds the inverse-propensity sums; `binary` reads a reported metric as converted or not.
    `until`, a stopped experiment's stop: events from then on count for nobody (reported outcomes
    are held back from the totals as they arrive, `outcomes.record`).
    """
    cuped = builtin and cuped_days is not None
    params = _params(key, metric, now, cuped_days, until)
    if not builtin and not bandit:
        return _reported_ab(db, params)
    per_user = _per_user(metric, builtin, cuped, binary)
    with db.read() as session:
        rows = [_centred(r) for r in session.execute(text(_SUMS.format(per_user=per_user)), params)]
        if any(r is None for r in rows):
            rows = [_recentred(r) for r in session.execute(text(_MOMENTS.format(per_user=per_user)), params)]
    out = {}
    for arm, n, total, mean, mean_x, positives, w, wy, w2, w2y, w2y2, m2, m2_x, c_xy, shift, residual, residual_x in rows:  # type: ignore[misc]
        numbers = [float(v or 0) for v in (total, w, wy, w2, w2y, w2y2, m2, m2_x, c_xy)]
        total, w, wy, w2, w2y, w2y2, m2, m2_x, c_xy = numbers
        out[arm] = ArmMoments(int(n), total, m2, int(positives or 0), mean_x, m2_x, c_xy, w, wy, w2, w2y, w2y2, centre=mean, shift=shift, residual=residual,
                              residual_x=residual_x)
    return out


def _params(key: str, metric: str, now: float, cuped_days: int | None, until: float | None) -> dict[str, Any]:
    params: dict[str, Any] = {"key": key, "metric": metric, "pre": (cuped_days or 0) * DAY, "until": math.inf if until is None else until}
    if metric in RETENTION_DAYS:  # only a retention metric waits for its users to mature (_MATURE), by the stop at the latest
        params["mature_before"] = min(now, params["until"]) - (RETENTION_DAYS[metric] + 1) * DAY
    return params


# y' - c for an arm's reference point c (its mean of y - theta x, as the moments give it); the sum of
# these deviations moves c to the exact mean (`_moved`).
_ADJUSTED_DEVIATION = _nz("u.v - CAST(:theta AS DOUBLE PRECISION) * u.nx - {centre}")
_ADJUSTED = f"SELECT arm, COUNT(*), SUM(d * d), SUM(d) FROM (SELECT u.arm AS arm, {_ADJUSTED_DEVIATION} AS d FROM ({{per_user}}) u) a GROUP BY arm"


def adjusted_spread(
    db: Database, key: str, metric: str, now: float, cuped_days: int, theta: float, centres: dict[str, float], until: float | None = None
) -> dict[str, float]:
    """Each arm's sum of squared deviations of y - theta x from its mean, over its users' own values.

    CUPED's spread for a covariate that predicts a built-in metric almost exactly, where the moments'
    m2_y - 2 theta c_xy + theta^2 m2_x would cancel to rounding; `centres` are the arms' means of y - theta x.
    """
    params = _params(key, metric, now, cuped_days, until)
    params["theta"] = theta if abs(theta) >= TINY else 0.0  # a factor of theta * nx, as of any product
    sql = _ADJUSTED.format(centre=_by_arm("u.arm", centres, params, "c"), per_user=_per_user(metric, builtin=True, cuped=True, binary=False))
    with db.read() as session:
        rows = list(session.execute(text(sql), params))
    return {arm: _moved(int(n), centres.get(arm, 0.0), float(squares or 0), float(deviations or 0))[1] for arm, n, squares, deviations in rows}


# Centring plain sums loses about log10(mean^2 / variance) of the 16 digits a double holds; up to
# this ratio the moments keep better than 1e-11 relative precision, beyond it the second pass runs.
_SAFE_RATIO = 1e4


def _centred(row: Any) -> tuple[Any, ...] | None:
    """One arm's row with centred moments derived from its plain sums, or None when that would lose precision."""
    arm, n, total, total_x, positives, w, wy, w2, w2y, w2y2, vv, xx, xv = row
    n = int(n)
    total, total_x, vv, xx, xv = (float(v or 0) for v in (total, total_x, vv, xx, xv))
    m2, m2_x = vv - total * total / n, xx - total_x * total_x / n
    # SNIPW's spread, sum w^2 (v - c)^2 with c its weighted mean, cancels the same way.
    w, wy, w2, w2y, w2y2 = (float(v or 0) for v in (w, wy, w2, w2y, w2y2))
    c = wy / w if w > 0 else 0.0
    weighted = (c * c * w2, w2y2 - 2 * c * w2y + c * c * w2)
    for square, spread in ((total * total / n, m2), (total_x * total_x / n, m2_x), weighted):
        if square > 0 and (spread <= 0 or square / spread > _SAFE_RATIO):
            return None
    return (arm, n, total, total / n, total_x / n, positives, w, wy, w2, w2y, w2y2, max(m2, 0.0), max(m2_x, 0.0), xv - total * total_x / n, 0.0, 0.0, 0.0)


def _recentred(row: Any) -> tuple[Any, ...]:
    """A second-pass row in `_centred`'s shape: the plain total, the arms' own means and the moments centred on them.

    The means are kept as the deviations moved them: recovered from a total, n * mean / n, each would lose
    about an ulp of the values' magnitude, which far from zero is most of a small difference between arms."""
    arm, n, mv, mx, positives, w, wy, w2, w2y, w2y2, vv, xx, xv, dv, dx, total = row
    n = int(n)
    mv, mx, vv, xx, xv, dv, dx = (float(v or 0) for v in (mv, mx, vv, xx, xv, dv, dx))
    mean_v, m2, residual = _moved(n, mv, vv, dv)
    mean_x, m2_x, residual_x = _moved(n, mx, xx, dx)
    # Sum((x - mx)(v - mv)) = Sum((x - x̄)(v - v̄)) + n (x̄ - mx)(v̄ - mv)
    return (arm, n, total, mean_v, mean_x, positives, w, wy, w2, w2y, w2y2, m2, m2_x, xv - dx * dv / n, mv, residual, residual_x)


def exposures_per_arm(db: Database, key: str) -> dict[str, int]:
    """How many users each arm was given, whatever any metric counts of them."""
    with db.read() as session:
        return {arm: int(n) for arm, n in session.execute(text(_EXPOSED), {"key": key})}


def points_per_arm(db: Database, key: str) -> dict[str, tuple[float, int]]:
    """Ledger points granted to each arm's exposed users, and the actions recorded for them while the experiment ran."""
    sql = (
        "SELECT arm, SUM(points), SUM(CASE WHEN reason = :stopped THEN 0 ELSE 1 END) FROM reward_ledger "
        "WHERE experiment_key = :key AND arm IS NOT NULL GROUP BY arm"
    )
    with db.read() as session:
        return {arm: (float(total or 0), int(actions or 0)) for arm, total, actions in session.execute(text(sql), {"key": key, "stopped": AFTER_THE_STOP})}
