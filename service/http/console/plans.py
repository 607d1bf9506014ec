"""The sample-size planner: the question a PM asks before defining an experiment, answered as POST /v1/plans/sample-size answers it."""
from __future__ import annotations

import json
from flask import render_template, request
from pydantic import ValidationError

from experiments.stats.power import PLAN_DEFAULTS
from service.errors import Invalid
from service.http.console import bp
from service.http.console.form_input import errors_by_field, form_number
from service.http.console.session import page
from service.http.endpoint import READ_EXPERIMENTS
from service.http.errors import details_from_pydantic
from service.http.schemas.results import PlanIn
from service.usecases.planning import PLAN_FIELDS, plan

# What the form shows before anything is asked: the API's own defaults, and an example to start from.
DEFAULTS = {"metric_kind": "binary", "baseline": "0.1", "sd": "", "mde": "0.01", **{k: str(v) for k, v in PLAN_DEFAULTS.items()}, "daily_users": ""}
_CHOICES = ("metric_kind", "mde_type", "correction")


@bp.get("/plan")
@page(READ_EXPERIMENTS)
def plan_page() -> tuple[str, int]:
    """A GET form, so that a plan is a link to share; nothing is stored."""
    asked = {k: request.args.get(k, "").strip() for k in PLAN_FIELDS if k in request.args}
    values = {**DEFAULTS, **asked}
    if not asked:
        return render_template("console/plan.html", values=values, errors={}, answer=None), 200
    body = {k: v if k in _CHOICES else form_number(v) for k, v in values.items() if v != ""}
    errors: dict[str, list[str]] = {}
    answer = None
    try:
        answer = plan(PlanIn.model_validate_json(json.dumps(body)).model_dump())
    except ValidationError as exc:
        errors_by_field(details_from_pydantic(exc), PLAN_FIELDS, into=errors)
    except Invalid as exc:
        errors_by_field(exc.details, PLAN_FIELDS, into=errors)
    return render_template("console/plan.html", values=values, errors=errors, answer=answer), (422 if errors else 200)
