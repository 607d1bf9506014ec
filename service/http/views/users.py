"""Users drifting away (editor, analyst)."""
from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response

from service.http.endpoint import READ_EXPERIMENTS, endpoint, services
from service.http.schemas.users import AtRiskOut, AtRiskQuery
from service.usecases import users

bp = Blueprint("users", __name__)
CSV_COLUMNS = ("user_id", "last_seen", "idle_days", "purchases", "revenue")


@bp.get("/v1/users/at-risk")
@endpoint("Valuable users who have gone quiet, most valuable first, a page at a time", roles=READ_EXPERIMENTS, tag="users", query=AtRiskQuery, response=AtRiskOut)
def at_risk(query: AtRiskQuery) -> AtRiskOut:
    """One page of the at-risk list."""
    return AtRiskOut.model_validate(users.at_risk(services().db, query.idle_days, query.min_purchases, query.limit, query.cursor))


# A spreadsheet runs a text cell that starts with one of these as a formula: a user_id such as
# =HYPERLINK(...) would run on the analyst's machine. A quote in front keeps it text (OWASP's
# advice for CSV injection); ids that start with a quote get one too, so that a script reads
# every id back by stripping one leading quote wherever there is one.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@bp.get("/v1/users/at-risk.csv")
@endpoint(f"The same page as CSV (RFC 4180, columns {', '.join(CSV_COLUMNS)}); the next page's cursor is in the X-Next-Cursor header, absent on the last page, and an id that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a carriage return) or that starts with a quote gets one more quote in front: strip one leading quote to read it back; every field is quoted", roles=READ_EXPERIMENTS, tag="users", query=AtRiskQuery, media_type="text/csv")
def at_risk_csv(query: AtRiskQuery) -> Response:
    """One page of the at-risk list as CSV."""
    return csv_response(query)


def csv_response(query: AtRiskQuery) -> Response:
    """One page of the at-risk list as CSV, for the API and the console alike."""
    page = users.at_risk(services().db, query.idle_days, query.min_purchases, query.limit, query.cursor)
    out = io.StringIO()
    # Every field quoted: a spreadsheet that splits on ';' (as many locales do) would otherwise make a
    # cell of whatever follows one inside an id, and a cell that starts with '=' runs as a formula.
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for user in page["users"]:
        writer.writerow([_cell(user[c]) for c in CSV_COLUMNS])
    headers = {"Content-Disposition": 'attachment; filename="at-risk.csv"'}
    if page["next_cursor"]:
        headers["X-Next-Cursor"] = page["next_cursor"]
    return Response(out.getvalue(), mimetype="text/csv", headers=headers)
