"""What if: another allocation of an experiment's users, valued offline from the logged assignments as POST /v1/experiments/{key}/evaluate values it.

A GET form, so that a question is a link to share. Shares are typed as relative weights, as the experiment
form's arm weights are ("1, 1, 2"), and divided by their sum, so that three equal arms need no 0.3333...
"""
from __future__ import annotations

import json
from typing import Any

from flask import render_template, request
from pydantic import ValidationError

from experiments.numbers import finite_number
from experiments.stats.ipw import FEW_EFFECTIVE_USERS
from service.errors import Invalid
from service.http.console import bp
from service.http.console.form_input import errors_by_field, form_number
from service.http.console.session import page
from service.http.endpoint import ANALYST, services
from service.http.errors import details_from_pydantic
from service.http.schemas.results import EvaluateIn
from service.usecases import experiments, planning

BEST_ARM = "best_arm"
SHARES = "shares"
WEIGHT = "weight."  # weight.<arm>: an arm's relative share


def _weights(exp: dict[str, Any], values: dict[str, str], errors: dict[str, list[str]]) -> dict[str, float] | None:
    """The shares the form's weights give (an empty one is 0), or None with the reasons noted beside the inputs."""
    weights: dict[str, float] = {}
    for arm in exp["arms"]:
        name = WEIGHT + arm["key"]
        value = form_number(values[name].strip() or "0")
        if not finite_number(value) or value < 0 or value > 1e12:
            errors.setdefault(name, []).append("must be a number from 0 to 1e12")
        else:
            weights[arm["key"]] = float(value)
    if errors:
        return None
    total = sum(weights.values())
    if total <= 0:
        errors.setdefault("allocation", []).append("give at least one arm a weight above 0")
        return None
    return {arm: w / total for arm, w in weights.items()}


def _values(exp: dict[str, Any], metrics: list[str], errors: dict[str, list[str]]) -> dict[str, str]:
    """What the form asks, with the page's defaults; a setting it does not know, an allocation that is neither choice
    and an unknown metric are noted, so that an old link to a changed experiment is not read as something else."""
    weights = [WEIGHT + a["key"] for a in exp["arms"]]
    unknown = sorted(set(request.args) - {"metric", "allocation", "alpha", *weights})
    if unknown:
        errors.setdefault("form", []).append(f"{', '.join(unknown)}: not a setting of this page (the arms are {', '.join(a['key'] for a in exp['arms'])})")
    values = {"metric": request.args.get("metric", "").strip() or exp.get("primary_metric") or metrics[0],
              "allocation": request.args.get("allocation", BEST_ARM), "alpha": request.args.get("alpha", "").strip() or "0.05"}
    if values["allocation"] not in (BEST_ARM, SHARES):
        errors.setdefault("allocation", []).append("choose the best arm or these shares")
    if values["metric"] not in metrics:
        errors.setdefault("metric", []).append(f"is not a metric of {exp['key']}")
    # An even split to start from; once any weight is sent, an arm not named gets none.
    missing = "0" if any(w in request.args for w in weights) else "1"
    values.update({w: request.args.get(w, missing) for w in weights})
    return values


@bp.get("/experiments/<key>/what-if")
@page(ANALYST)
def what_if_page(key: str) -> tuple[str, int]:
    """The estimate for the allocation asked for; serving only the best arm when nothing is asked yet."""
    svc = services()
    exp, metrics = experiments.get_with_metrics(svc.db, key)
    errors: dict[str, list[str]] = {}
    values = _values(exp, list(metrics), errors)
    allocation = _weights(exp, values, errors) if values["allocation"] == SHARES else BEST_ARM
    # A metric the experiment does not have is named among the errors; until then it reads as a rate where higher is better.
    chosen = metrics.get(values["metric"])
    lower_is_better = chosen is not None and not chosen.higher_is_better
    answer = None
    try:
        # Bad weights are named already; the rest is checked all the same, so that every error shows at once.
        body = EvaluateIn.model_validate_json(json.dumps({"allocation": allocation or BEST_ARM, "metric": values["metric"], "alpha": form_number(values["alpha"])}))
        if not errors:
            answer = planning.evaluate(svc.db, svc.experiment_cache, key, body.allocation, body.metric, body.alpha, lowest_is_best=lower_is_better)
    except ValidationError as exc:
        errors_by_field(details_from_pydantic(exc), into=errors)
    except Invalid as exc:
        errors_by_field(exc.details, into=errors)
    served = [(a["key"], answer["allocation"][a["key"]]) for a in exp["arms"] if answer["allocation"].get(a["key"])] if answer else []
    return render_template(
        "console/what_if.html", served=served, exp=exp, metrics=[(m, m) for m in metrics], values=values, errors=errors, answer=answer,
        kind=chosen.kind if chosen is not None else "binary", lower_is_better=lower_is_better, few_effective_users=FEW_EFFECTIVE_USERS, best_arm=BEST_ARM, shares=SHARES, weight=WEIGHT,
        field_ids={WEIGHT + a["key"]: f"weight-{i}" for i, a in enumerate(exp["arms"])},
    ), (422 if errors else 200)
