"""The at-risk list: valuable users who have gone quiet, the loyalty team's list to win back, a page at a time and as CSV."""
from __future__ import annotations

from typing import Any

from flask import render_template, request
from pydantic import ValidationError
from werkzeug.wrappers import Response

from service.errors import Invalid
from service.http.console import bp
from service.http.console.form_input import errors_by_field
from service.http.console.session import back_with_query, page
from service.http.endpoint import READ_EXPERIMENTS, services
from service.http.errors import details_from_pydantic
from service.http.schemas.users import AtRiskQuery
from service.http.views import users as api_users
from service.usecases import users

FIELDS = ("idle_days", "min_purchases", "limit", "cursor")


def _query() -> tuple[AtRiskQuery | None, dict[str, str], dict[str, list[str]]]:
    """The list asked for, checked by the API's own query schema; what was typed; and what is wrong with it."""
    values = {k: request.args.get(k, "").strip() for k in FIELDS if request.args.get(k, "").strip()}
    try:
        return AtRiskQuery.model_validate(values), values, {}
    except ValidationError as exc:
        return None, values, errors_by_field(details_from_pydantic(exc))


@bp.get("/users/at-risk")
@page(READ_EXPERIMENTS)
def at_risk_page() -> tuple[str, int]:
    """A page of the list, most valuable first, with a link to the next and the same page as CSV."""
    query, values, errors = _query()
    listed: dict[str, Any] | None = None
    if query is not None:
        try:
            listed = users.at_risk(services().db, query.idle_days, query.min_purchases, query.limit, query.cursor)
        except Invalid as exc:  # a cursor this service did not write
            errors_by_field(exc.details, into=errors)
    shown = {"idle_days": 30, "min_purchases": 1, "limit": 100, **values}
    return render_template("console/at_risk.html", values=shown, errors=errors, listed=listed,
                           csv_args={k: v for k, v in values.items() if k in FIELDS}), (422 if errors else 200)


@bp.get("/users/at-risk.csv")
@page(READ_EXPERIMENTS)
def at_risk_csv() -> Response:
    """The API's CSV for the signed-in key, which a browser cannot send as a bearer header."""
    query, _, _ = _query()
    if query is None:
        return back_with_query("console.at_risk_page")
    try:
        return api_users.csv_response(query)
    except Invalid:  # a cursor this service did not write
        return back_with_query("console.at_risk_page")
