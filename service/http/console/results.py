"""Results pages: the table of arms, a forest plot of differences from the control, the daily series, the retention curves, SRM, and the CSV."""
from __future__ import annotations

from typing import Any

from flask import render_template, request
from pydantic import ValidationError
from werkzeug.wrappers import Response

from experiments.definitions import RETENTION_DAYS, Metric
from experiments.stats.analysis import FEW_EVENTS
from experiments.stats.ipw import FEW_EFFECTIVE_USERS
from service.errors import Invalid
from service.http.console import bp
from service.http.console.chart_ticks import number, pp_tick, signed_tick
from service.http.console.charts import Interval, Series, forest_plot, line_chart
from service.http.console import formatting as fmt
from service.http.console.formatting import level
from service.http.console.form_input import errors_by_field
from service.http.console.session import back_with_query, page
from service.http.console.verdicts import verdicts
from service.http.endpoint import ANALYST, services
from service.http.errors import details_from_pydantic
from service.http.schemas.results import ResultsQuery, RetentionQuery
from service.http.views import results as api_results
from service.usecases import experiment_overview, experiments, results, series

# Two weeks by default: 30 days costs twice the query time on PostgreSQL, and a switch offers it.
RETENTION_CHART_DAYS = 14
RETENTION_CHOICES = (7, 14, 30, 60)
SWITCHES = ("metric", "alpha", "correction", "cuped", "sequential")


def _query() -> tuple[ResultsQuery, dict[str, list[str]]]:
    """The metric, alpha and correction asked for, checked by the API's own query schema; defaults where they are not valid."""
    asked = {k: v for k, v in request.args.items() if k in SWITCHES and v != ""}
    errors: dict[str, list[str]] = {}
    # A shared link with a typo (sequental=true) had shown the default figures without a word; the API answers 422.
    unknown = sorted(set(request.args) - set(SWITCHES) - {"days"})
    if unknown:
        errors["form"] = [f"{', '.join(repr(name) for name in unknown)} {'is not a setting' if len(unknown) == 1 else 'are not settings'} of this page, so the figures below ignore {'it' if len(unknown) == 1 else 'them'}"]
    try:
        return ResultsQuery.model_validate(asked), errors
    except ValidationError as exc:
        errors_by_field(details_from_pydantic(exc), into=errors)
        return ResultsQuery.model_validate({k: v for k, v in asked.items() if k not in errors}), errors


def _answer(key: str, query: ResultsQuery) -> dict[str, Any]:
    """The same computation as GET /v1/experiments/{key}/results."""
    svc = services()
    return results.results(svc.db, svc.experiment_cache, key, results.ResultsRequest(**query.model_dump()))


def _daily_chart(key: str, answer: dict[str, Any], started_at: str | None) -> tuple[Any, str | None, Any]:
    """The cumulative chart, or why there is none; beside a chart, what it shows that the page might not lead one to expect;
    and for a rate in an A/B test, each arm's difference from the control day by day, with its confidence sequence."""
    svc = services()
    metric, kind = answer["metric"], answer["metric_kind"]
    if metric in RETENTION_DAYS:
        return None, "Retention is read by exposure cohort, not by calendar day: the curves under Retention by arm show it day by day since exposure.", None
    try:
        daily = series.daily(svc.db, svc.experiment_cache, key, metric, alpha=answer["alpha"])
    except Invalid as exc:
        return None, exc.message, None
    if not daily["days"]:
        return None, "No exposures yet.", None
    arms = [a["arm"] for a in daily["days"][0]["arms"]]
    lines = [Series(arm, [d["arms"][i]["mean"] for d in daily["days"]]) for i, arm in enumerate(arms)]
    value_text = (lambda v: f"{v:.1%}") if kind == "binary" else number
    # Month and day read best, unless the series crosses a new year (a backdated exposure can start it years ago).
    one_year = len({d["date"][:4] for d in daily["days"]}) == 1
    labels = [d["date"][5:] if one_year else d["date"] for d in daily["days"]]
    chart = line_chart(f"Cumulative {metric} per exposed user, by day", labels, lines, y_label=metric, y_format=value_text, percent=kind == "binary", x_name="Day")
    difference = None
    # A bandit's arms are not comparable naively, sequence or not (the table says so): no such chart for one.
    if kind == "binary" and answer["type"] != "bandit" and len(arms) > 1:
        gaps = [Series(arm, [d["arms"][i]["diff"] for d in daily["days"]], band=[d["arms"][i]["diff_ci"] for d in daily["days"]])
                for i, arm in enumerate(arms) if i]
        difference = line_chart(f"Difference in {metric} from {arms[0]} (percentage points), with its {level(answer['alpha'])} confidence sequence, by day",
                                labels, gaps, y_label="difference", y_format=lambda v: fmt.difference(v, "binary"), tick_format=pp_tick, zero=True, x_name="Day",
                                band_reach=DIFFERENCE_BAND_REACH)
    if started_at is not None and daily["days"][0]["date"] < started_at[:10]:
        # The API stores an exposure's time as the storefront sent it, also before the start (an exposure logged late).
        return chart, (f"The series starts on {daily['days'][0]['date']}, before the experiment started ({started_at[:10]}): "
                       "the storefront sent exposures dated then (POST /v1/assignments or ?timestamp=), and they count from their own day."), difference
    return chart, None, difference


# A confidence sequence's first days are tens of times wider than its latest: those wider than this many
# times the latest are cut at the chart's edge (charts.line_chart), and the page says so.
DIFFERENCE_BAND_REACH = 4.0


def _retention_days(errors: dict[str, list[str]]) -> int:
    """The retention window asked for, within the API's bounds; the default otherwise."""
    try:
        return RetentionQuery.model_validate({"days": request.args.get("days") or RETENTION_CHART_DAYS}).days
    except ValidationError as exc:
        errors_by_field(details_from_pydantic(exc), into=errors)
        return RETENTION_CHART_DAYS


# A day's share drawn from fewer of an arm's users than this swings from 0 % to 100 % on one user: its
# curve stops there (the API still gives every day, with its users).
RETENTION_MIN_USERS = 20


def _retention_chart(key: str, days: int, alpha: float) -> tuple[Any, bool, int]:
    """The curves, whether any point is drawn, and the last day any arm has RETENTION_MIN_USERS users for."""
    svc = services()
    curves = series.retention(svc.db, svc.experiment_cache, key, days, alpha)

    def drawn(day: dict[str, Any]) -> bool:
        return day["eligible"] >= RETENTION_MIN_USERS

    lines = [Series(a["arm"], [d["rate"] if drawn(d) else None for d in a["days"]], [d["ci"] if drawn(d) else None for d in a["days"]]) for a in curves["arms"]]
    has_data = any(v is not None for s in lines for v in s.values)
    last = max((d["day"] for a in curves["arms"] for d in a["days"] if drawn(d)), default=0)
    chart = line_chart(f"Share of exposed users active on day k after exposure ({level(alpha)} intervals shaded)", [str(k) for k in range(1, days + 1)], lines, y_label="active", y_format=lambda v: f"{v:.1%}", percent=True, x_name="Day after exposure")
    return chart, has_data, last


@bp.get("/experiments/<key>/results")
@page(ANALYST)
def results_page(key: str) -> tuple[str, int]:
    """Every arm against the control on one metric, with charts."""
    exp, metrics = experiments.get_with_metrics(services().db, key)
    query, errors = _query()
    try:
        answer = _answer(key, query)
    except Invalid as exc:
        # The field's own message: the page puts it beside the metric menu, which names the field already.
        errors.setdefault("metric", []).extend([d["message"] for d in exc.details] or [exc.message])
        query = query.model_copy(update={"metric": None})
        answer = _answer(key, query)
    args = _template_args(key, exp, metrics, query, answer, errors)  # notes a retention window it cannot use among the errors
    return render_template("console/results.html", **args), (422 if errors else 200)


def _template_args(
    key: str, exp: dict[str, Any], metrics: dict[str, Metric], query: ResultsQuery, answer: dict[str, Any], errors: dict[str, list[str]],
) -> dict[str, Any]:
    """What the results page shows of an answer: the figures within their possible values, the charts, and how to read each arm."""
    answer, cut = _within_possible_values(answer)
    guardrail_kinds: dict[str, str] = {g: metrics[g].kind for g in exp["guardrails"]}
    days = _retention_days(errors)
    lower_is_better = not answer["higher_is_better"]
    rough = _rough_comparisons(answer) if answer["metric_kind"] == "binary" else set()
    return {
        "exp": exp,
        "answer": answer,
        "errors": errors,
        "metrics": list(metrics),
        "has_points": any(a.get("points_per_user") is not None for a in answer["arms"]),
        "no_reward_actions": {a["arm"] for a in answer["arms"] if results.NO_REWARD_ACTIONS in a["notes"]},
        # Whose cost is not known yet: an arm compared with a control, either of which has recorded no reward actions or
        # granted nothing for them.
        "unpaid": {a["arm"] for a in answer["arms"][1:] if _cost_unknown(a) or _cost_unknown(answer["arms"][0])},
        # For a metric where lower is better, more of it is not a gain to pay for: no column of what it would cost.
        "has_cost": not lower_is_better and any(a.get("cost_per_incremental") is not None for a in answer["arms"]),
        **_charts(key, answer, exp.get("started_at"), days),
        # The query as applied, for links to the same figures with one setting changed.
        "applied_args": {k: v for k, v in (("metric", answer["metric"]), ("alpha", answer["alpha"]), ("correction", answer["correction"]),
                                           ("cuped", _switch(query.cuped)), ("sequential", _switch(query.sequential)),
                                           ("days", days if days != RETENTION_CHART_DAYS else None)) if v is not None},
        "overrides": {"cuped": _switch(query.cuped), "sequential": _switch(query.sequential)},
        "analysis": exp.get("analysis") or {},
        "few_effective_users": FEW_EFFECTIVE_USERS,
        "few_events": FEW_EVENTS,
        "rough": rough,
        "cut": cut,
        "guardrail_kinds": guardrail_kinds,
        # The API's chance is of exceeding the control; for a metric where lower is better the page reads it the other way.
        "lower_is_better": lower_is_better,
        "verdicts": verdicts(answer, lower_is_better, rough, guardrail_kinds),
        # What each arm's users are shown, where arms compare recommenders: the table names arms only.
        "recommenders": experiment_overview.arm_recommenders(services().db, exp),
    }


def _charts(key: str, answer: dict[str, Any], started_at: str | None, days: int) -> dict[str, Any]:
    """The forest plot of differences from the control, the daily charts and the retention curves, with what the page says of them."""
    binary = answer["metric_kind"] == "binary"
    # The difference, not the lift: a lift's interval also carries the control's own uncertainty, and
    # with a small control it straddled zero beside a significant p-value, telling a reader two things.
    differences = [Interval(a["arm"], a["diff"], *(a["diff_ci"] or (None, None))) for a in answer["arms"][1:]]
    unit = " (percentage points)" if binary else ""
    title = f"Difference in {answer['metric']}{unit} from {answer['control']} ({level(answer['alpha'])} intervals)"
    # The chart's title and description, which a screen reader reads, give the table's own figures.
    kind = answer["metric_kind"]
    forest = forest_plot(title, differences, x_format=lambda v: fmt.difference(v, kind), tick_format=pp_tick if binary else signed_tick,
                         lower_is_better=not answer["higher_is_better"])
    daily, daily_note, daily_difference = _daily_chart(key, answer, started_at)
    retention, retention_has_data, retention_last = _retention_chart(key, days, answer["alpha"])
    return {
        "forest": forest, "daily": daily, "daily_note": daily_note, "daily_difference": daily_difference,
        "retention": retention, "retention_has_data": retention_has_data, "retention_last": retention_last, "retention_min_users": RETENTION_MIN_USERS,
        "days": days, "day_choices": sorted({*RETENTION_CHOICES, days}),
    }


# What a rate's figures can be, whatever an interval's formula gives: a difference of rates lies within
# ±100 points, a lift at or above -100 %, an IPW rate at or above 0 (weights can carry it past 1), and a
# self-normalised one, a weighted mean of 0s and 1s, within [0, 1] (as the what-if page cuts them too).
# The true effect is bounded so after CUPED too, though adjusted rates themselves may leave [0, 1].
_RATE_BOUNDS = (
    ("diff_ci", -1.0, 1.0, "difference"), ("lift_ci", -1.0, None, "lift"), ("ipw_ci", 0.0, None, "ipw"), ("snipw_ci", 0.0, 1.0, "snipw"),
)


def _within_possible_values(answer: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The answer as the page shows it, each rate interval cut to the values its figure can take, and which kinds were cut.

    The normal, delta-method and sequential intervals the contract defines reach past those bounds on
    few users ([-24 pp, +144 pp]); a cut interval covers the same possible values and claims nothing
    more. The API and the CSV keep the computed ones.
    """
    if answer["metric_kind"] != "binary":
        return answer, set()
    cut: set[str] = set()
    arms = []
    for arm in answer["arms"]:
        shown = dict(arm)
        for field, low, high, kind in _RATE_BOUNDS:
            if fmt.beyond(shown.get(field), low, high):
                shown[field] = fmt.clamped(shown[field], low, high)
                cut.add(kind)
        arms.append(shown)
    return {**answer, "arms": arms}, cut


def _rough_comparisons(answer: dict[str, Any]) -> set[str]:
    """Arms whose comparison with the control rests on fewer than FEW_EVENTS conversions or non-conversions on a side.

    Wald's interval of the difference then shrinks towards one arm's spread alone (9 of 9 converting has
    none), so a cost per incremental conversion computed from it would look established when it is not.
    """
    def thin(arm: dict[str, Any]) -> bool:
        return bool(arm["users"]) and min(arm["total"], arm["users"] - arm["total"]) < FEW_EVENTS

    control = answer["arms"][0]
    return {a["arm"] for a in answer["arms"][1:] if thin(a) or thin(control)}


def _switch(value: bool | None) -> str | None:
    """A query override as the page's select sends it back: 'true', 'false', or None for the experiment's own setting."""
    return None if value is None else str(value).lower()


@bp.get("/experiments/<key>/results.csv")
@page(ANALYST)
def results_csv(key: str) -> Response:
    """The API's CSV for the signed-in key, which a browser cannot send as a bearer header.

    Settings it cannot use (typed on the results page but not applied) send the browser back to that
    page with them, which says what is wrong beside each field, instead of to an error page."""
    query, errors = _query()
    if errors:
        return back_with_query("console.results_page", key=key)
    try:
        return api_results.csv_response(key, query)
    except Invalid:  # a metric the experiment does not have, which the page names beside its menu
        return back_with_query("console.results_page", key=key)


def _cost_unknown(arm: dict[str, Any]) -> bool:
    """Whether an arm's points say nothing of its cost yet: no reward actions recorded, or none paid for so far."""
    return results.NO_REWARD_ACTIONS in arm["notes"] or results.UNPAID in arm["notes"]
