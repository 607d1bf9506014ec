"""The settings of a started experiment that may still change: name, description, traffic, guardrails and analysis.

Its design (arms, weights, metrics, layer, targeting) is frozen once it leaves draft, and its guardrails
and analysis settings once it stops; the API lets the rest change, and so does this page. A guardrail
added late is computed over the whole experiment, like any other.
"""
from __future__ import annotations

from typing import Any, Mapping

from flask import abort, flash, render_template, request
from pydantic import ValidationError

from experiments.definitions import LIVE
from service.errors import ChangedMeanwhile, Conflict, Invalid
from service.http.console import bp
from service.http.console.experiment_form import edited, guardrails_and_analysis, values_of
from service.http.console.form_input import form_number, kept_over_a_change, plain_words
from service.http.console.session import back, kept_form, page, typed_fields
from service.http.endpoint import EDITOR, services
from service.http.errors import details_from_pydantic
from service.http.schemas.experiments import ExperimentPatch
from service.usecases import experiments

FIELDS = ("name", "description", "traffic", "guardrails", "analysis.sequential", "analysis.cuped", "analysis.cuped_days")


def _changes(form: Mapping[str, str], exp: Mapping[str, Any]) -> dict[str, Any]:
    """The PATCH body a posted settings form describes; traffic only while users can still be enrolled."""
    def text(name: str) -> str:
        return (form.get(name) or "").strip()

    changes: dict[str, Any] = {}
    for name in ("name", "description"):  # sent only when edited
        typed = edited(form, name, exp.get(name))
        if typed is not None:
            changes[name] = typed if name == "description" else typed.strip()
    # Sent only when changed: a layered experiment's traffic is frozen, and saving a new guardrail must not touch it.
    if exp["status"] in LIVE and text("traffic") and form_number(text("traffic")) != exp["traffic"]:
        changes["traffic"] = form_number(text("traffic"))
    if exp["status"] != "stopped":  # a stopped experiment's reading stays as it was at the stop
        changes["guardrails"], analysis = guardrails_and_analysis(form)
        changes["analysis"] = {**exp["analysis"], **analysis}
    return changes


def _errors(details: list[dict[str, Any]]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for d in details:
        field = str(d.get("field", "form")).removeprefix("body.")
        if field.startswith("guardrails"):
            field = "guardrails"
        errors.setdefault(field if field in FIELDS else "form", []).append(plain_words(str(d.get("message", "is not valid"))))
    return errors


def _page(exp: Mapping[str, Any], values: Mapping[str, str], errors: dict[str, list[str]], status: int = 200) -> tuple[str, int]:
    return render_template("console/experiment_settings.html", exp=exp, values=values, errors=errors, live=exp["status"] in LIVE), status


@bp.route("/experiments/<key>/settings", methods=["GET", "POST"])
@page(EDITOR, refills=True)
def experiment_settings(key: str) -> Any:
    """Change what a started experiment still allows; a draft has its whole form."""
    db = services().db
    exp = experiments.get(db, key)
    if exp["status"] == "draft":
        abort(409, f"{key} is a draft: change it, design and all, with its edit form.")
    current = {**values_of(exp), "revision": str(exp["revision"])}
    if request.method == "GET":
        return _page(exp, current, {})
    values = typed_fields()
    again = kept_form()
    if again is not None:
        return _page(exp, values, {"form": [again[0]]}, again[1])
    if values.get("revision") != current["revision"]:
        # Saving the whole page over a change made since it was opened would undo that change unseen.
        kept, said = kept_over_a_change(values, current, FIELDS)
        return _page(exp, kept, {"form": [said]}, 409)
    changes = _changes(values, exp)
    try:
        body = ExperimentPatch.model_validate(changes)
        experiments.change(db, services().experiment_cache, key, body.model_dump(mode="json", exclude_unset=True), revision=exp["revision"])
    except ChangedMeanwhile:  # between this page's check and the save
        fresh = experiments.get(db, key)
        kept, said = kept_over_a_change(values, {**values_of(fresh), "revision": str(fresh["revision"])}, FIELDS)
        return _page(fresh, kept, {"form": [said]}, 409)
    except ValidationError as exc:
        return _page(exp, values, _errors(details_from_pydantic(exc)), 422)
    except Invalid as exc:
        return _page(exp, values, _errors(exc.details or [{"field": "form", "message": exc.message}]), 422)
    except Conflict as exc:
        return _page(exp, values, {"form": [exc.message]}, 409)
    flash(f"Saved the settings of {key}.", "success")
    return back("console.experiment_detail", key=key)
