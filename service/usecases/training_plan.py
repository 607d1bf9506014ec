"""A training request checked part by part: the model's parameters, the matrix, the evaluation and the search."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from recommender.matrix import MAX_SETTING, MatrixSettings
from recommender.models import ALGORITHMS, make_recommender
from recommender.settings import checked
from recommender.training import TrainingSettings
from service.errors import Invalid
from service.usecases.model_tuning import TunePlan, plan_tuning


# Where each setting that is not a model parameter belongs, for a helpful refusal.
_SETTING_HOMES = {**{f.name: "matrix" for f in fields(MatrixSettings)}, **{f.name: "evaluation" for f in fields(TrainingSettings)}}


@dataclass(frozen=True)
class TrainingPlan:
    """A validated request: the model's parameters, the matrix settings and the evaluation settings, each on its own."""

    algorithm: str
    params: dict[str, Any]
    matrix: MatrixSettings
    evaluation: TrainingSettings
    tune: TunePlan | None = None


def plan(
    algorithm: str, params: Mapping[str, Any], matrix: Mapping[str, Any], evaluation: Mapping[str, Any], default_weights: Mapping[str, float],
    tune: Mapping[str, Any] | None = None,
) -> TrainingPlan:
    """Validate each part of a training request; Invalid names the part and the bad value."""
    model_type = ALGORITHMS.get(algorithm)
    if model_type is not None and not model_type.REFITS:
        searched = (tune or {}).get("space") or {}
        for field, names in (("params", params), ("tune.space", searched)):
            if "refit_iterations" in names:
                refitting = ", ".join(name for name, cls in ALGORITHMS.items() if cls.REFITS)
                raise Invalid.field(field, f"refit_iterations applies to {refitting} only; {algorithm} refits by fitting again")
    try:
        make_recommender(algorithm, params)
    except (TypeError, ValueError) as exc:
        misplaced = sorted(set(params) & _SETTING_HOMES.keys())
        hint = f"; {misplaced[0]!r} is a setting of '{_SETTING_HOMES[misplaced[0]]}', send it there" if misplaced else ""
        raise Invalid.field("params", f"{exc}{hint}") from None
    try:
        settings = checked(MatrixSettings, {"weights": dict(default_weights), **matrix})
        settings.check_bounds()
    except (TypeError, ValueError) as exc:
        raise Invalid.field("matrix", str(exc)) from None
    try:
        training = checked(TrainingSettings, evaluation)
    except (TypeError, ValueError) as exc:
        raise Invalid.field("evaluation", str(exc)) from None
    return TrainingPlan(algorithm, dict(params), settings, training, plan_tuning(algorithm, params, tune))


def within_bound(part: str, value: Any) -> None:
    """A new request's numbers stay within MAX_SETTING, as its matrix settings do; versions stored before keep theirs."""
    if isinstance(value, Mapping):
        for name, inner in value.items():
            within_bound(f"{part}.{name}", inner)
    elif isinstance(value, list):  # a range [low, high] or a list of choices: the error names the setting
        for inner in value:
            within_bound(part, inner)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and not abs(value) <= MAX_SETTING:
        raise Invalid.field(part, f"must be at most {MAX_SETTING:g} in magnitude")
