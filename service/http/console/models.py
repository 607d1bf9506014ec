"""Model pages: versions with their data and holdout metrics, a chart of precision@10, training, activation and rollback."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from flask import flash, render_template, request, session
from pydantic import ValidationError

from recommender.models import ALGORITHMS, DEFAULT_ALGORITHM
from recommender.search_space import Choice, Dimension
from recommender.tuning import MAX_TRIALS, TuneSettings
from service.errors import Conflict, Invalid
from service.http.console import bp, choices
from service.http.console.charts import Series, line_chart
from service.http.console.form_input import form_number, parse_json_field, plain_words, validated_whole
from service.http.console.session import back, kept_form, page
from service.http.endpoint import EDITOR, services
from service.http.errors import details_from_pydantic
from service.http.schemas.catalogue import TrainRequest
from service.usecases import experiment_overview
from service.usecases import model_training as training


def _when(moments: list[float]) -> list[str]:
    """When each version was asked for, in UTC (a version name's random suffix tells a reader nothing);
    to the second where two fall in the same minute."""
    minutes = [datetime.fromtimestamp(t, timezone.utc).strftime("%m-%d %H:%M") for t in moments]
    if len(set(minutes)) == len(minutes):
        return minutes
    return [datetime.fromtimestamp(t, timezone.utc).strftime("%m-%d %H:%M:%S") for t in moments]


def _chart(versions: list[Any]) -> Any:
    """Holdout precision@10 of each ready version, oldest first, beside the popularity baseline of the same split."""
    ready = [v for v in reversed(versions) if v.status == "ready" and v.metrics.get("precision_at_10") is not None]
    if not ready:
        return None
    return line_chart(
        "Holdout precision@10 by version, against popularity on the same split",
        _when([v.created_at for v in ready]),
        [
            Series("model", [v.metrics.get("precision_at_10") for v in ready]),
            Series("popularity", [v.metrics.get("popularity_precision_at_10") for v in ready]),
        ],
        y_label="precision@10",
        x_name="Asked for (UTC)",
    )


@bp.get("/models")
@page(EDITOR)
def model_list() -> str:
    """Every version; the page refreshes itself while one is training (which is why the training form has a page of its own)."""
    svc = services()
    versions = training.list_versions(svc.db, svc.config)
    active = training.active_version(svc.db)
    return render_template(
        "console/models.html",
        versions=versions,
        active=active,
        # Activating a version older than the one serving is a rollback; say so on its link.
        active_created=next((v.created_at for v in versions if v.version == active), None),
        chart=_chart(versions),
        training_now=any(v.status == "training" for v in versions),
        reloading=_reloading(),
    )


def _reloading() -> bool:
    """Whether the list reloads itself while a run trains. A reload moves keyboard focus back to the top, so
    someone tabbing to a version's links turns it off, and it stays off for the session (WCAG 2.2.1)."""
    asked = request.args.get("reload")
    if asked in ("on", "off"):
        session[RELOAD] = asked
    return session.get(RELOAD, "on") != "off"


RELOAD = "models_reload"


TUNE_FIELDS = ("tune.trials", "tune.metric", "tune.seed", "tune.space")
FIELDS = ("algorithm", "params", "activate", "tune", *TUNE_FIELDS)
# What a new form shows, and what an emptied number stands for: the API's own defaults.
BLANK = {"algorithm": DEFAULT_ALGORITHM, "params": "", "activate": "", "tune": "", "tune.trials": str(TuneSettings.trials), "tune.metric": TuneSettings.metric,
         "tune.seed": str(TuneSettings.seed), "tune.space": ""}


def _spelled(dim: Dimension) -> str:
    if isinstance(dim, Choice):
        return "one of " + ", ".join(json.dumps(o) for o in dim.options)
    return f"{dim.low:,g} to {dim.high:,g}" + (", evenly in the logarithm" if dim.log else "")


def _default_ranges() -> list[tuple[str, list[tuple[str, str]]]]:
    """Each algorithm's own search space, as its model class declares it."""
    return [(name, [(p, _spelled(dim)) for p, dim in cls.SEARCH_SPACE.items()]) for name, cls in sorted(ALGORITHMS.items())]



def _form(values: dict[str, str], errors: dict[str, list[str]], status: int = 200) -> tuple[str, int]:
    return render_template(
        "console/model_train.html", algorithms=sorted(ALGORITHMS), metric_options=choices.TUNING_METRICS, ranges=_default_ranges(), max_trials=MAX_TRIALS,
        max_seed=2**32 - 1, blank=BLANK, values=values, errors=errors,
    ), status


def _number(values: dict[str, str], name: str) -> Any:
    return form_number(values[name].strip() or BLANK[name])


def _json(values: dict[str, str], name: str, errors: dict[str, list[str]]) -> Any:
    """A JSON field's object ({} when empty); a parse error is noted under the field, so that every bad text is named at once."""
    try:
        return parse_json_field(values[name]) if values[name].strip() else {}
    except ValueError as exc:
        errors[name] = [f"is not valid JSON ({exc})"]
        return {}


@bp.route("/models/new", methods=["GET", "POST"])
@page(EDITOR, refills=True)
def model_new() -> Any:
    """The training form, checked like POST /v1/models; nothing goes live unless its box is ticked."""
    if request.method == "GET":
        return _form(dict(BLANK), {})
    values = {k: request.form.get(k, BLANK[k] if k.startswith("tune.") else "") for k in FIELDS}
    values["tune"] = "yes" if values["tune"] else ""  # any value is a ticked box, as a browser sends it
    again = kept_form()
    if again is not None:
        return _form(values, {"form": [again[0]]}, again[1])
    errors: dict[str, list[str]] = {}
    params = _json(values, "params", errors)
    tune = None
    if values["tune"]:
        space = _json(values, "tune.space", errors)
        tune = {"trials": _number(values, "tune.trials"), "metric": values["tune.metric"], "seed": _number(values, "tune.seed"), "space": space}
    sent = {"algorithm": values["algorithm"], "params": params, "activate": values["activate"] == "yes", "tune": tune}
    boxes = [("params", params), ("tune.space", tune["space"] if tune else None)]
    if errors:  # the other fields' problems too, in the same answer (what the unreadable text holds is not checked)
        try:
            validated_whole(TrainRequest, sent, boxes)
        except (ValidationError, Invalid) as exc:
            for field, messages in _by_field(details_from_pydantic(exc) if isinstance(exc, ValidationError) else exc.details).items():
                errors.setdefault(field, messages)
        return _form(values, errors, 422)
    try:
        body = validated_whole(TrainRequest, sent, boxes)
        svc = services()
        settings = body.tune.model_dump() if body.tune is not None else None
        record = training.train(svc.db, svc.config, body.algorithm, body.params, body.activate, body.matrix, body.evaluation, settings)
    except ValidationError as exc:
        return _form(values, _by_field(details_from_pydantic(exc)), 422)
    except Invalid as exc:
        return _form(values, _by_field(exc.details or [{"field": "params", "message": exc.message}]), 422)
    except Conflict as exc:  # as many runs at work as the service allows: the form keeps what was typed
        return _form(values, {"form": [exc.message]}, 409)
    searching = f", searching {body.tune.trials} parameter set{'' if body.tune.trials == 1 else 's'} first" if body.tune is not None else ""
    # Whether the page follows the run is the status line's to say: a quick run has ended by the time the page shows.
    flash(f"Started training {record.version} ({body.algorithm}{searching}); its row below shows how it ends.", "success")
    return back("console.model_list")


def _by_field(details: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Errors under the form's fields: the algorithm, a tuning setting (any range under its box), or the parameters (any nested name)."""
    out: dict[str, list[str]] = {}
    for d in details:
        name = str(d.get("field", ""))
        target = next((f for f in TUNE_FIELDS if name == f or name.startswith(f + ".")), None) or ("tune" if name == "tune" else None)
        if target is None:
            target = "algorithm" if name == "algorithm" else "params"
        message = plain_words(str(d.get("message", "is not valid")))
        # Named within its box, which the page labels already: "factors: ..." under Parameters or a range.
        inner = name[len(target) + 1:] if name.startswith(target + ".") else name
        out.setdefault(target, []).append(f"{inner}: {message}" if name not in (target, "params", "") else message)
    return out


@bp.route("/models/<id:version>/activate", methods=["GET", "POST"])
@page(EDITOR)
def model_activate(version: str) -> Any:
    """Serve this version from every worker (also a rollback), after an explicit confirmation."""
    svc = services()
    record = training.get_version(svc.db, svc.config, version)
    active = training.active_version(svc.db)
    if record.status != "ready" or record.version == active:  # say so now, not after the box is ticked
        impossible = "it is already the version served" if record.version == active else f"it is {record.status}; only a ready version can be served"
        return render_template("console/activate.html", record=record, active=active, impossible=impossible), 409
    outcome = _confirmed(lambda: training.activate(svc.db, version), f"Every worker now serves {version}.")
    if not isinstance(outcome, tuple):
        return outcome
    error, status = outcome
    # A run that was to go live when ready will not, once this activation is made: say so before.
    pending = [v.version for v in training.list_versions(svc.db, svc.config) if v.status == "training" and v.activate_when_ready]
    following = experiment_overview.following_active(svc.db)
    # What the version would replace scored too: a rollback to a weaker model should not be a surprise.
    served = training.get_version(svc.db, svc.config, active) if active is not None else None
    return render_template("console/activate.html", record=record, active=active, served=served, error=error, pending=pending, following=following), status


@bp.route("/models/<id:version>/cancel", methods=["GET", "POST"])
@page(EDITOR)
def model_cancel(version: str) -> Any:
    """Stop a run in progress, after an explicit confirmation; it activates nothing."""
    svc = services()
    record = training.get_version(svc.db, svc.config, version)
    if record.status != "training":
        return render_template("console/model_cancel.html", record=record, impossible=f"it is {record.status}; only a run in progress can be cancelled"), 409
    outcome = _confirmed(lambda: training.cancel(svc.db, version), f"Cancelled {version}; it will not be served.")
    if not isinstance(outcome, tuple):
        return outcome
    error, status = outcome
    return render_template("console/model_cancel.html", record=record, error=error), status


def _confirmed(act: Callable[[], object], done: str) -> Any:
    """A confirmation page's POST: with its box ticked, `act` and go back to the list; otherwise (error or None, status) to show."""
    if request.method != "POST":
        return None, 200
    if request.form.get("confirm") != "yes":
        return "Tick the box to confirm.", 422
    try:
        act()
    except Conflict as exc:  # it changed meanwhile (finished, activated elsewhere)
        return exc.message, 409
    flash(done, "success")
    return back("console.model_list")
