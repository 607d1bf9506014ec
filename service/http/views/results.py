"""Results for analysts: statistics per arm, CSV, and per-day series."""
from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response

from service.http.endpoint import ANALYST, endpoint, services
from service.http.schemas.results import DailyOut, DailyQuery, EvaluateIn, EvaluateOut, ResultsOut, ResultsQuery, RetentionOut, RetentionQuery
from service.usecases import planning, results, series

bp = Blueprint("results", __name__)
KEY = {"key": "key"}
CSV_COLUMNS = (
    "experiment", "metric", "metric_kind", "test", "correction", "alpha", "arm", "users", "total", "mean",
    "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high", "lift", "lift_ci_low", "lift_ci_high",
    "p_value", "p_value_adjusted", "significant", "chance_to_beat_control", "ipw_mean", "ipw_ci_low", "ipw_ci_high",
    "snipw_mean", "snipw_ci_low", "snipw_ci_high", "points_per_user", "cost_per_incremental", "ipw_effective_users", "notes",
    "higher_is_better",  # columns are only ever added at the end, so scripts that read by position keep working
    "reward_actions",
)


def _compute(key: str, query: ResultsQuery) -> dict[str, Any]:
    svc = services()
    return results.results(svc.db, svc.experiment_cache, key, results.ResultsRequest(**query.model_dump()))


@bp.get("/v1/experiments/<key>/results")
@endpoint("Per-arm figures, intervals, corrected p-values, chance to beat control, SRM", roles=ANALYST, tag="results", query=ResultsQuery, response=ResultsOut, errors=(404,), path=KEY)
def show(key: str, query: ResultsQuery) -> ResultsOut:
    """Compute the results now, from aggregate queries."""
    return ResultsOut.model_validate(_compute(key, query))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # every digit, so the CSV matches the JSON exactly
    if isinstance(value, list):  # an arm's notes, which a spreadsheet should show beside its figures
        return "; ".join(value)
    return value


@bp.get("/v1/experiments/<key>/results.csv")
@endpoint(f"The same rows as /results, as CSV (RFC 4180): one row per arm, columns {', '.join(CSV_COLUMNS)}; an arm's notes are joined with '; '", roles=ANALYST, tag="results", query=ResultsQuery, media_type="text/csv", errors=(404,), path=KEY)
def as_csv(key: str, query: ResultsQuery) -> Response:
    """One row per arm."""
    return csv_response(key, query)


def csv_response(key: str, query: ResultsQuery) -> Response:
    """The results as CSV, one row per arm; the console serves the same answer to signed-in browsers."""
    body = ResultsOut.model_validate(_compute(key, query)).model_dump()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for arm in body["arms"]:
        pairs = {f"{name}_{end}": (arm[name] or [None, None])[i] for name in ("ci", "diff_ci", "lift_ci", "ipw_ci", "snipw_ci") for i, end in enumerate(("low", "high"))}
        row = {**{k: body[k] for k in ("experiment", "metric", "metric_kind", "test", "correction", "alpha", "higher_is_better")}, **arm, **pairs}
        writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    return Response(out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{key}-{body["metric"]}-results.csv"'})


@bp.get("/v1/experiments/<key>/results/daily")
@endpoint("Per-day cumulative users and mean per arm, and each arm's difference from the control with its confidence sequence, for plotting", roles=ANALYST, tag="results", query=DailyQuery, response=DailyOut, errors=(404,), path=KEY)
def per_day(key: str, query: DailyQuery) -> DailyOut:
    """Cumulative series by UTC day."""
    svc = services()
    return DailyOut.model_validate(series.daily(svc.db, svc.experiment_cache, key, query.metric, alpha=query.alpha))


@bp.get("/v1/experiments/<key>/results/retention")
@endpoint("Retention curve per arm: the share of exposed users active on each day after exposure", roles=ANALYST, tag="results", query=RetentionQuery, response=RetentionOut, errors=(404,), path=KEY)
def retention(key: str, query: RetentionQuery) -> RetentionOut:
    """Day k = 1..days, counting only users whose day k has ended."""
    svc = services()
    return RetentionOut.model_validate(series.retention(svc.db, svc.experiment_cache, key, query.days, query.alpha))


@bp.post("/v1/experiments/<key>/evaluate")
@endpoint("Value another allocation offline from the logged assignments (IPW and self-normalised IPW)", roles=ANALYST, tag="results", body=EvaluateIn, response=EvaluateOut, errors=(404,), path=KEY)
def evaluate(key: str, body: EvaluateIn) -> EvaluateOut:
    """Estimate the metric per user had users been allocated by `allocation`."""
    svc = services()
    return EvaluateOut.model_validate(planning.evaluate(svc.db, svc.experiment_cache, key, body.allocation, body.metric, body.alpha))
