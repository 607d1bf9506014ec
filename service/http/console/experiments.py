"""Experiment pages: the list, one experiment, the create and edit form, and start, pause and stop with a confirmation."""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Mapping

from flask import Response, abort, flash, render_template, request
from pydantic import BaseModel, ValidationError

from experiments.definitions import BUILTIN_METRICS, TRANSITIONS, AnalysisSettings, BanditSettings
from service.errors import ChangedMeanwhile, Conflict, Invalid
from service.http.console import bp
from service.http.console.experiment_form import (
    MAX_ROWS, POPULARITY, VERSION, analysis_values, edited, field_errors, input_name, json_boxes, parse, row_count, schedule_fields, values_of,
)
from service.http.console.form_input import kept_over_a_change, validated_whole
from service.http.console.session import back, kept_form, page, typed_fields
from service.http.endpoint import EDITOR, READ_EXPERIMENTS, services
from service.http.errors import details_from_pydantic
from service.http.schemas.experiments import ExperimentIn
from service.usecases import experiment_overview, experiments
from service.usecases import model_training as training

# What each lifecycle move does, said on its confirmation page.
CONSEQUENCES = {
    "start": "Users will be assigned to its arms from now on; its arms, weights and metrics can no longer change.",
    "pause": ("Exposed users keep their arm, and their reward actions go on earning by its schedules (stop it to end that); "
              "nobody new is enrolled until it is resumed."),
    "stop": (
        "Nobody new is enrolled, and assignment answers not_running for everyone, users already exposed included; their "
        "reward actions earn nothing more from its schedules (promised bonuses end here; pause instead to keep them). "
        "It cannot be started again. Results stay available, with exposed users in their arms, and measure what they did "
        "before the stop: outcomes and events dated before it still count when they arrive later, nothing dated after it does."
    ),
}


RESUME = "Exposed users keep their arms, and new users are enrolled again as before the pause."


@bp.get("/experiments")
@page(READ_EXPERIMENTS)
def experiment_list() -> str:
    """Every experiment with its status, users so far and SRM warning."""
    return render_template("console/experiments.html", experiments=experiment_overview.experiments_overview(services().db))


@bp.get("/experiments/<key>")
@page(READ_EXPERIMENTS)
def experiment_detail(key: str) -> str:
    """One experiment's definition, with the moves its status allows."""
    exp = experiments.get(services().db, key)
    moves = [action for action, allowed_from in TRANSITIONS.items() if exp["status"] in allowed_from]
    recommenders = experiment_overview.arm_recommenders(services().db, exp)
    return render_template("console/experiment.html", exp=exp, moves=moves, recommenders=recommenders)


def _form(values: dict[str, str], errors: dict[str, list[str]], exp: dict[str, Any] | None, more: str = "", status: int = 200) -> tuple[str, int]:
    """The create or edit form, with any errors beside the fields they name."""
    notice = None
    if more and row_count(values, f"{more}s", 0, 0) == MAX_ROWS:  # "add a row" at the bound says so instead of redrawing the same rows
        notice = f"An experiment holds at most {MAX_ROWS} {more}s, and the form has all {MAX_ROWS} rows: no row was added."
        more = ""
    arm_rows = row_count(values, "arms", 2, 1 if more == "arm" else 0)
    metric_rows = row_count(values, "metrics", 1, 1 if more == "metric" else 0)
    return render_template(
        "console/experiment_form.html",
        values=values,
        errors=errors,
        notice=notice,
        input_name=lambda name: input_name(name, values),
        exp=exp,
        schedules=schedule_fields(),
        default_policy=BanditSettings.algorithm,
        builtin_metrics=list(BUILTIN_METRICS),
        arm_rows=arm_rows,
        metric_rows=metric_rows,
        recommenders=_recommender_choices(),
        # After "add a row", the new row's first input has the focus, not the top of the page.
        focus=f"arms.{arm_rows - 1}.key" if more == "arm" else f"metrics.{metric_rows - 1}.key" if more == "metric" else None,
    ), status


def _recommender_choices() -> list[tuple[str, str]]:
    """What an arm may serve: the active model (no choice), popular items, or a ready version, told apart by
    how it was trained and scored on its holdout, the one served now marked."""
    db = services().db
    active = training.active_version(db)
    choices = [("", "the active model, unless the payload names one"), (POPULARITY, "the most popular items, as the active model counts them")]
    for r in training.ready_versions(db):
        precision = r.metrics.get("precision_at_10")
        notes = [r.algorithm, *(["tuned"] if r.tune else []), *([f"precision@10 {precision:.3f}"] if isinstance(precision, float) else []),
                 *(["active now"] if r.version == active else [])]
        choices.append((VERSION + r.version, f"{r.version} ({', '.join(notes)})"))
    return choices


def _validated(schema: type[BaseModel], fields: dict[str, Any]) -> BaseModel:
    """The same schema check as the API's request body."""
    return validated_whole(schema, fields, json_boxes(fields))


def _save(exp: dict[str, Any] | None) -> Any:
    """Validate a posted form like the API does, then create or change the experiment; re-render with errors on failure."""
    values = typed_fields()
    again = kept_form()
    if again is not None:
        return _form(values, {"form": [again[0]]}, exp, status=again[1])
    if request.form.get("more") in ("arm", "metric"):  # "add a row" buttons re-draw the form without saving
        return _form(values, {}, exp, request.form["more"])
    if exp is not None and values.get("revision") != str(exp["revision"]):
        # The form sends the whole draft: saving it over a change made since it was opened would undo that change unseen.
        kept, said = kept_over_a_change(values, _editing(exp))
        return _form(kept, {"form": [said]}, exp, status=409)
    parsed = parse(values)
    if exp is not None:  # the edit form sends the whole draft: a name or description not edited stays as stored
        for name in ("name", "description"):
            if edited(values, name, exp.get(name)) is None and exp.get(name) is not None:
                parsed.fields[name] = exp[name]
    db = services().db
    try:
        # Checked as a whole definition in both cases: the edit form sends the whole draft (and
        # ExperimentPatch's before-validator on `arms` refuses multiplier timestamps sent as text).
        body = _validated(ExperimentIn, parsed.fields if exp is None else {**parsed.fields, "key": exp["key"]})
        if parsed.errors:
            return _form(values, parsed.errors, exp, status=422)
        fields = body.model_dump(mode="json", exclude_unset=True)
        if exp is not None and "analysis" in fields:  # the form shows some settings; the others (sequential_tuning) stay
            fields["analysis"] = {**exp["analysis"], **fields["analysis"]}
        if exp is None:
            saved = experiments.create(db, fields)
        else:
            changes = {k: v for k, v in fields.items() if k != "key"}
            saved = experiments.change(db, services().experiment_cache, exp["key"], changes, revision=exp["revision"])
    except ChangedMeanwhile:  # between this page's check and the save (only a change names a revision)
        assert exp is not None
        fresh = experiments.get(db, exp["key"])
        kept, said = kept_over_a_change(values, _editing(fresh))
        return _form(kept, {"form": [said]}, fresh, status=409)
    except ValidationError as exc:
        return _form(values, field_errors(details_from_pydantic(exc), parsed), exp, status=422)
    except Invalid as exc:
        return _form(values, field_errors(exc.details or [{"field": "form", "message": exc.message}], parsed), exp, status=422)
    except Conflict as exc:  # on a new draft, the one conflict there is: its key is taken
        return _form(values, {"key" if exp is None else "form": [exc.message]}, exp, status=409)
    flash(f"Saved {saved['key']} as a {saved['status']}.", "success")
    return back("console.experiment_detail", key=saved["key"])


@bp.route("/new-experiment", methods=["GET", "POST"])  # not under /experiments/: "new" is a valid experiment key
@page(EDITOR, refills=True)
def experiment_new() -> Any:
    """The form for a new draft."""
    if request.method == "POST":
        return _save(None)
    return _form({"type": "ab", "traffic": "1", "arms.0.key": "control", "arms.0.weight": "1", "arms.1.key": "", "arms.1.weight": "1",
                  **analysis_values(asdict(AnalysisSettings()))}, {}, None)


@bp.route("/experiments/<key>/edit", methods=["GET", "POST"])
@page(EDITOR, refills=True)
def experiment_edit(key: str) -> Any:
    """The form for a draft; a started experiment's design is frozen."""
    exp = experiments.get(services().db, key)
    if exp["status"] != "draft":
        abort(409, f"Only a draft can be edited; {key} is {exp['status']}, so its arms, weights and metrics are frozen.")
    if request.method == "POST":
        return _save(exp)
    return _form(_editing(exp), {}, exp)


def _editing(exp: Mapping[str, Any]) -> dict[str, str]:
    """The edit form's values for a draft as stored now, with the revision they are of."""
    return {**values_of(exp), "revision": str(exp["revision"])}


@bp.route("/experiments/<key>/<any(start, pause, stop):action>", methods=["GET", "POST"])
@page(EDITOR)
def experiment_move(key: str, action: str) -> Any:
    """Start, pause or stop, after an explicit confirmation."""
    exp = experiments.get(services().db, key)
    error, status = None, 200
    if exp["status"] not in TRANSITIONS[action]:  # say so now, not after the box is ticked (a stale link, a second tab)
        needs = " or ".join(sorted(TRANSITIONS[action]))
        return render_template("console/confirm.html", exp=exp, action=action, impossible=f"{action} needs it {needs}"), 409
    if request.method == "POST":
        if request.form.get("confirm") != "yes":
            error, status = "Tick the box to confirm.", 422
        else:
            try:
                moved = experiments.move(services().db, services().experiment_cache, key, action, services().config.max_served_versions)
            except Conflict as exc:
                # Refused for what the experiment or its neighbours are (a full layer, a version not ready):
                # pressing the button again would fail alike, so the page says why and where to change it.
                return render_template("console/confirm.html", exp=exp, action=action, refused=exc.message), 409
            else:
                flash(f"{key} is now {moved['status']}.", "success")
                return back("console.experiment_detail", key=key)
    resuming = action == "start" and exp["status"] == "paused"
    consequence = RESUME if resuming else CONSEQUENCES[action]
    return render_template("console/confirm.html", exp=exp, action=action, verb="resume" if resuming else action, consequence=consequence, error=error), status


DELETE = "The draft goes, definition and all; nobody was ever exposed to it, so no results go with it. This cannot be undone."


@bp.route("/experiments/<key>/delete", methods=["GET", "POST"])
@page(EDITOR)
def experiment_delete(key: str) -> Any:
    """Delete a draft, after an explicit confirmation; a started experiment is stopped instead, and keeps its results."""
    exp = experiments.get(services().db, key)
    if exp["status"] != "draft":
        instead = "it has stopped, and keeps its results for good" if exp["status"] == "stopped" else "stop it instead, and its results stay"
        return render_template("console/confirm.html", exp=exp, action="delete", impossible=f"only a draft can be deleted; {instead}"), 409
    error, status = None, 200
    if request.method == "POST":
        if request.form.get("confirm") != "yes":
            error, status = "Tick the box to confirm.", 422
        else:
            try:
                experiments.remove(services().db, services().experiment_cache, key)
            except Conflict as exc:  # started meanwhile, from another tab or host
                error, status = exc.message, 409
            else:
                flash(f"{key} is deleted.", "success")
                return back("console.experiment_list")
    return render_template("console/confirm.html", exp=exp, action="delete", consequence=DELETE, error=error), status


@bp.get("/schedule-fields.css")
def schedule_css() -> Response:
    """Show only the chosen schedule type's inputs (CSS :has, no JavaScript), one rule per registered type."""
    rules = "\n".join(f'  .schedule:has(option[value="{kind}"]:checked) .params-{kind} {{ display: block; }}' for kind in schedule_fields())
    # Browsers without :has show every type's inputs, each group under its type's legend; only the chosen type's are read.
    return Response(f"@supports selector(:has(*)) {{\n  .schedule .params {{ display: none; }}\n{rules}\n}}\n", mimetype="text/css")
