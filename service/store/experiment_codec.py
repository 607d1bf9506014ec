"""Between the API's JSON (also how definitions are stored) and `experiments` dataclasses."""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Mapping

from experiments.definitions import BUILTIN_METRICS, AnalysisSettings, Arm, BanditSettings, DefinitionError, Experiment, Metric, reference_problems
from experiments.schedules import Schedule, ScheduleError, parse_schedule
from experiments.targeting import Group, TargetingError, parse_rule, require_values
from service.errors import Invalid, detail
from service.store.tables import ExperimentRow
from service.timestamps import iso


ANALYSIS_DEFAULTS = asdict(AnalysisSettings())
# A bandit's settings as it runs them: a definition that left one out shows the default it gets.
BANDIT_DEFAULTS = asdict(BanditSettings())
METRIC_DEFAULTS = {"kind": "binary", "higher_is_better": True}


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def schedule_from_json(spec: Mapping[str, Any] | None) -> Schedule | None:
    """A stored schedule (ISO multiplier window) as a domain schedule."""
    if spec is None:
        return None
    plain = dict(spec)
    if plain.get("multiplier"):
        m = plain["multiplier"]
        plain["multiplier"] = {"factor": m["factor"], "start": _epoch(m["start"]), "end": _epoch(m["end"])}
    else:
        plain.pop("multiplier", None)
    return parse_schedule(plain)


def definition(fields: Mapping[str, Any], stored: bool = False) -> Experiment:
    """Build and validate a definition from API-shaped fields; 422 names the bad field.

    `stored`: the fields were read back, so checks added since they were written are skipped.
    """
    problems: list[tuple[str, str]] = []  # every one a pass finds: a form then shows all its typos at once
    arms = []
    for i, arm in enumerate(fields["arms"]):
        try:
            arms.append(Arm(arm["key"], float(arm.get("weight", 1.0)), arm.get("payload") or {}, schedule_from_json(arm.get("schedule"))))
        except ScheduleError as exc:
            problems.append((f"arms.{i}.schedule.{exc.field}", exc.message))
        except DefinitionError as exc:
            problems.append((f"arms.{i}.{exc.field}", exc.message))
    metrics = []
    for i, m in enumerate(fields["metrics"]):
        try:
            metrics.append(Metric(m["key"], m.get("kind", "binary"), bool(m.get("higher_is_better", True))))
        except DefinitionError as exc:
            problems.append((f"metrics.{i}.{exc.field}", exc.message))
    targeting = None
    if fields.get("targeting") is not None:
        try:
            targeting = parse_rule(fields["targeting"])
            if not stored:
                require_values(targeting)
        except TargetingError as exc:
            problems.extend(exc.problems)
    declared = [m["key"] for m in fields["metrics"]]  # as sent: a metric whose own check failed is still declared
    primary = fields.get("primary_metric") or (declared[0] if declared else None)
    if primary is None:
        problems.append(("primary_metric", "is required when the experiment declares no metric of its own"))
    elif len(arms) == len(fields["arms"]) and len(metrics) == len(fields["metrics"]):
        try:
            experiment = _experiment(fields, tuple(arms), tuple(metrics), primary, targeting)
        except DefinitionError as exc:
            problems.extend(exc.problems)
        else:
            if not problems:
                return experiment
    else:  # no definition to check as a whole without those arms or metrics: what the names refer to can be
        problems += reference_problems(declared, primary, tuple(fields.get("guardrails") or ()))
    raise Invalid.many([detail(name, message) for name, message in problems])


def _experiment(fields: Mapping[str, Any], arms: tuple[Arm, ...], metrics: tuple[Metric, ...], primary: str, targeting: Group | None) -> Experiment:
    bandit = fields.get("bandit")
    return Experiment(
        key=fields["key"],
        name=fields["name"],
        type=fields["type"],
        arms=arms,
        metrics=metrics,
        primary_metric=primary,
        traffic=float(fields["traffic"]),
        description=fields.get("description", ""),
        bandit=BanditSettings(**bandit) if bandit is not None else None,
        status=fields.get("status", "draft"),
        layer=fields.get("layer"),
        targeting=targeting,
        analysis=AnalysisSettings(**(fields.get("analysis") or {})),
        guardrails=tuple(fields.get("guardrails") or ()),
    )


# A definition's stored fields, in the order the API shows them.
DEFINITION_FIELDS = ("key", "name", "description", "type", "traffic", "arms", "metrics", "primary_metric", "bandit", "status", "layer",
                     "targeting", "analysis", "guardrails")


def field_as_read(name: str, value: Any) -> Any:
    """A stored definition field as the service reads it: a row keeps only what was sent, and the rest reads as its default."""
    if name == "metrics":  # a metric stored as sent without `kind` is binary
        return [{"key": m["key"], **METRIC_DEFAULTS, **m} for m in value or []]
    if name == "bandit":
        return {**BANDIT_DEFAULTS, **value} if value is not None else None
    if name == "analysis":
        return {**ANALYSIS_DEFAULTS, **(value or {})}
    if name == "guardrails":  # no guardrails may be stored as null
        return list(value or [])
    return value


def row_fields(row: ExperimentRow) -> dict[str, Any]:
    """A stored row as API-shaped definition fields."""
    return {name: field_as_read(name, getattr(row, name)) for name in DEFINITION_FIELDS}


def from_row(row: ExperimentRow) -> Experiment:
    """A stored row as a domain definition (it was validated when stored).

    Rows stored before built-in metrics were refused in `metrics` may still list
    them; they are always available, so reading such a row drops them.
    """
    fields = row_fields(row)
    fields["metrics"] = [m for m in fields["metrics"] if m["key"] not in BUILTIN_METRICS]
    return definition(fields, stored=True)


def to_json(row: ExperimentRow) -> dict[str, Any]:
    """A stored row as the API's experiment object."""
    return {
        **row_fields(row),
        "revision": row.revision,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "started_at": iso(row.started_at),
        "stopped_at": iso(row.stopped_at),
        "layer_range": {"start": row.layer_start, "end": row.layer_end} if row.layer_start is not None else None,
    }
