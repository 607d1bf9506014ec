"""The experiment form: its schedule fields from the registry, the definition it posts, and errors mapped back to its fields.

Field names follow the API's field paths (`arms.0.schedule.every`), so that an error's
`field` names the input it belongs to. Each schedule type has its own inputs
(`arms.0.schedule.fixed_ratio.every`): the type picker shows only the chosen type's.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from experiments.definitions import AnalysisSettings, BanditSettings
from experiments.schedules import SCHEDULES
from service.http.console.form_input import form_number, parse_json_field, plain_words
from service.http.console.formatting import amount

MAX_ROWS = 50  # the API's bound on arms and on metrics
_ROW = re.compile(r"^(arms|metrics)\.([0-9]{1,2})\.")
_BREAKS = re.compile(r"[\r\n]")
_PAST_9999 = re.compile(r"^[0-9]{5,}-")


@dataclass(frozen=True)
class ParamField:
    """One parameter input of a schedule type, with its bounds as the dataclass declares them."""

    name: str
    doc: str
    integer: bool
    minimum: float | None
    exclusive: bool
    maximum: float

    @property
    def hint(self) -> str:
        """The bounds in words."""
        kind = "a whole number" if self.integer else "a number"
        if self.minimum is None:
            return f"{kind} up to {amount(self.maximum)}"
        return f"{kind} {'above' if self.exclusive else 'at least'} {amount(self.minimum)} and at most {amount(self.maximum)}"


def schedule_fields() -> dict[str, list[ParamField]]:
    """Every registered schedule type and its parameter inputs, in declaration order."""
    out = {}
    for kind, cls in SCHEDULES.items():
        out[kind] = [
            ParamField(f.name, f.metadata["doc"], f.metadata["integer"], f.metadata["gt"] if f.metadata["gt"] is not None else f.metadata["ge"], f.metadata["gt"] is not None, f.metadata["le"])
            for f in cls.parameters()
        ]
    return out


@dataclass
class Parsed:
    """What a posted form says: the definition, errors found before validation, and which form row each arm and metric came from."""

    fields: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)
    arm_rows: list[int] = field(default_factory=list)
    metric_rows: list[int] = field(default_factory=list)
    chosen_recommenders: set[int] = field(default_factory=set)


def _timestamp(raw: str) -> str:
    """A datetime-local value (no zone) read as UTC."""
    if re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d$", raw):
        return raw + ":00Z"
    if re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$", raw):
        return raw + "Z"
    return raw


def _kept_time(form: Mapping[str, str], name: str) -> str:
    """The time a datetime-local input holds, or the stored one it was shown from when left as shown.

    The input holds milliseconds at most, in UTC: a stored time with microseconds or another offset
    (the API keeps a time as sent) is shown rounded, and saved unchanged it stays as stored.
    """
    raw, was = (form.get(name) or "").strip(), form.get(name + ".was") or ""
    # As moments, not as text: a browser posts "…T00:00:00.000" back as "…T00:00".
    shown = _moment(_timestamp(_datetime_local(was))) if was else None
    return was if shown is not None and _moment(_timestamp(raw)) == shown else _timestamp(raw)


def _moment(iso: str) -> datetime | None:
    """An ISO time as an aware datetime, or None when it is not one Python reads."""
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None


def _rows(form: Mapping[str, str], group: str) -> list[int]:
    # The form draws rows 0 to 49 (the API's bound): a row beyond them, which only a hand-made post has, is
    # not the form's, like any other name it does not draw; read, its errors would point at no field.
    found = {int(m.group(2)) for name in form for m in [_ROW.match(name)] if m and m.group(1) == group}
    return sorted(row for row in found if row < MAX_ROWS)


def parse(form: Mapping[str, str]) -> Parsed:
    """The API-shaped definition a posted form describes (the schema and the use case validate it)."""
    parsed = Parsed({})

    def text(name: str) -> str:
        return (form.get(name) or "").strip()

    def put(target: dict[str, Any], key: str, name: str) -> None:
        if text(name):
            target[key] = form_number(text(name))

    def load_json(name: str) -> Any:
        try:
            return parse_json_field(text(name)) if text(name) else None
        except ValueError as exc:
            parsed.errors.setdefault(name, []).append(f"is not valid JSON ({exc})")
            return None

    f = parsed.fields
    # A browser sends a text area's line breaks as CRLF; the description is kept as typed otherwise.
    # Saving a draft leaves a name or description not edited as stored (see `edited`).
    f["key"], f["name"], f["description"] = text("key"), text("name"), (form.get("description") or "").replace("\r\n", "\n")
    f["type"] = text("type") or "ab"
    put(f, "traffic", "traffic")
    f["layer"] = text("layer") or None
    f["targeting"] = load_json("targeting")
    if text("primary_metric"):
        f["primary_metric"] = text("primary_metric")
    f["bandit"] = None
    if f["type"] == "bandit":
        f["bandit"] = {"algorithm": text("bandit.algorithm") or BanditSettings.algorithm}
        put(f["bandit"], "epsilon", "bandit.epsilon")
        put(f["bandit"], "min_probability", "bandit.min_probability")
        put(f["bandit"], "attribution_hours", "bandit.attribution_hours")
    f["arms"] = []
    rows = _rows(form, "arms")
    for row in rows:
        arm = _arm(form, row, text, put, load_json)
        if arm is not None:
            _choose_recommender(arm, form.get(f"arms.{row}.recommender") or "", row, parsed)  # not stripped: a version's name is exact
            _whole_window(arm, row, parsed)
            f["arms"].append(arm)
            parsed.arm_rows.append(row)
    # Leaving the control's row out would quietly make the next arm the baseline of every comparison and cost.
    if f["arms"] and rows and parsed.arm_rows[0] != rows[0]:
        parsed.errors.setdefault(f"arms.{rows[0]}.key", []).append(
            "is the control's row, and it is empty: fill it in, or move the control's key and schedule here; the first arm is what every other arm is compared with"
        )
    f["metrics"] = []
    for row in _rows(form, "metrics"):
        if text(f"metrics.{row}.key"):
            f["metrics"].append({"key": text(f"metrics.{row}.key"), "kind": text(f"metrics.{row}.kind") or "binary",
                                 "higher_is_better": not text(f"metrics.{row}.lower_is_better")})
            parsed.metric_rows.append(row)
    f["guardrails"], f["analysis"] = guardrails_and_analysis(form)
    return parsed


def _whole_window(arm: dict[str, Any], row: int, parsed: Parsed) -> None:
    """A multiplier needs its factor and both ends of its window: a blank one is said to be missing, not
    to be an ISO 8601 timestamp with a zone, which the date and time picker cannot type."""
    multiplier = (arm.get("schedule") or {}).get("multiplier")
    if multiplier is None:
        return
    for part, what in (("factor", "what the points are multiplied by"), ("start", "when it starts, in UTC"), ("end", "when it ends, in UTC")):
        if multiplier[part] == "":
            parsed.errors.setdefault(f"arms.{row}.schedule.multiplier.{part}", []).append(
                f"is required for a multiplier ({what}); clear all three fields for none")
        elif part != "factor" and _PAST_9999.match(str(multiplier[part])):  # the picker goes to year 275760
            parsed.errors.setdefault(f"arms.{row}.schedule.multiplier.{part}", []).append(
                "lies past the year 9999: a time must be at most 100 years after the server's current time")


def edited(form: Mapping[str, str], name: str, stored: str | None) -> str | None:
    """A name or description field as typed (line breaks as LF), or None when it says what `stored` says or was not sent.

    A browser sends a text area's line breaks as CRLF and keeps what an input's value holds around it,
    so a form saved unedited must not rewrite either: a long description could grow past its bound.
    """
    if name not in form:
        return None
    typed = form[name].replace("\r\n", "\n")
    return None if typed.strip() == (stored or "").replace("\r\n", "\n").strip() else typed


def guardrails_and_analysis(form: Mapping[str, str]) -> tuple[list[str], dict[str, Any]]:
    """The guardrail keys and analysis settings a posted form holds (the draft form's and the settings page's)."""
    def text(name: str) -> str:
        return (form.get(name) or "").strip()

    guardrails = [name.strip() for name in text("guardrails").split(",") if name.strip()]
    # Unticked boxes send nothing, so both are always sent: the form shows every setting.
    analysis: dict[str, Any] = {"sequential": bool(text("analysis.sequential")), "cuped": bool(text("analysis.cuped"))}
    if text("analysis.cuped_days"):
        analysis["cuped_days"] = form_number(text("analysis.cuped_days"))
    return guardrails, analysis


def _arm(
    form: Mapping[str, str], row: int, text: Callable[[str], str], put: Callable[[dict[str, Any], str, str], None], load_json: Callable[[str], Any]
) -> dict[str, Any] | None:
    """One arm row; None for a row left blank (a chosen recommender or a payload without a key is refused by the schema, not dropped)."""
    p = f"arms.{row}."
    kind = text(p + "schedule.type")
    if not any(text(p + name) for name in ("key", "recommender", "payload")) and not kind:
        return None
    # A blank payload is none ({}); anything typed goes to the schema as it parses, so that [], 0 or null are refused
    # there as the API refuses them (JSON that does not parse has been said to, and stands as {}).
    typed = text(p + "payload")
    payload = load_json(p + "payload") if typed else {}
    arm: dict[str, Any] = {"key": text(p + "key"), "payload": {} if payload is None and typed != "null" else payload, "schedule": None}
    put(arm, "weight", p + "weight")
    if kind:
        schedule: dict[str, Any] = {"type": kind}
        if text(p + "schedule.action"):
            schedule["action"] = text(p + "schedule.action")
        for param in schedule_fields().get(kind, []):
            put(schedule, param.name, f"{p}schedule.{kind}.{param.name}")
        m = p + "schedule.multiplier."
        if any(text(m + part) for part in ("factor", "start", "end")):
            schedule["multiplier"] = {"factor": form_number(text(m + "factor")), "start": _kept_time(form, m + "start"), "end": _kept_time(form, m + "end")}
        arm["schedule"] = schedule
    return arm


# The recommender select's values: "popularity", or a version behind a prefix, so that no version's name reads as popularity.
POPULARITY = "popularity"
VERSION = "version:"


def recommender_choice(payload: Any) -> str | None:
    """What an arm's recommender select shows for a stored payload, or None when the payload names none or names one
    the select cannot show (popularity of one version; a version with a line break, which a browser would send back
    changed), which then stays in the payload's JSON."""
    spec = payload.get("recommender") if isinstance(payload, dict) else None
    if spec == {"algorithm": POPULARITY}:
        return POPULARITY
    if isinstance(spec, dict) and set(spec) == {"model_version"} and isinstance(spec["model_version"], str) and not _BREAKS.search(spec["model_version"]):
        return VERSION + spec["model_version"]
    return None


def _choose_recommender(arm: dict[str, Any], choice: str, row: int, parsed: Parsed) -> None:
    """Put the recommender chosen in an arm's select into its payload, as the API spells it."""
    if not choice or not isinstance(arm["payload"], dict):
        return  # a payload that is not an object is the schema's to refuse
    name = f"arms.{row}.recommender"
    if choice != POPULARITY and not choice.startswith(VERSION):
        parsed.errors.setdefault(name, []).append("is not one of the recommenders offered")
    elif "recommender" in arm["payload"]:
        parsed.errors.setdefault(name, []).append("the payload names a recommender too: choose it in one place")
    else:
        spec = {"algorithm": POPULARITY} if choice == POPULARITY else {"model_version": choice[len(VERSION):]}
        arm["payload"] = {**arm["payload"], "recommender": spec}
        parsed.chosen_recommenders.add(row)


def json_boxes(fields: dict[str, Any]) -> list[tuple[str, Any]]:
    """A definition's fields typed as JSON, by name: the targeting and each arm's payload."""
    return [("targeting", fields.get("targeting")), *((f"arms.{i}.payload", arm.get("payload")) for i, arm in enumerate(fields.get("arms") or []))]


def field_errors(details: list[dict[str, Any]], parsed: Parsed) -> dict[str, list[str]]:
    """Errors keyed by the form field they name: arm and metric indices become form rows, schedule type tags are dropped."""
    errors = {k: list(v) for k, v in parsed.errors.items()}
    for d in details:
        parts = str(d.get("field", "")).split(".")
        if parts and parts[0] == "body":
            parts = parts[1:]
        if len(parts) > 1 and parts[0] in ("arms", "metrics") and parts[1].isdigit():
            rows = parsed.arm_rows if parts[0] == "arms" else parsed.metric_rows
            if int(parts[1]) < len(rows):
                parts[1] = str(rows[int(parts[1])])
        if parts[:1] == ["guardrails"]:
            parts = parts[:1]  # one input holds them all, and each message names its metric
        if len(parts) > 3 and parts[2] == "schedule" and parts[3] in SCHEDULES:
            del parts[3]  # the schema's union tag: the form has one input per parameter name
        message = plain_words(str(d.get("message", "is not valid")))
        if parts[:1] == ["arms"] and parts[2:4] == ["payload", "recommender"] and parts[1].isdigit() and int(parts[1]) in parsed.chosen_recommenders:
            parts = [*parts[:2], "recommender"]  # the select made it, so the error sits beside the select
        # A place inside a JSON text area (a targeting rule's leaf, a payload's key) is named in the
        # message, and the error sits beside the text area, the only input there is.
        inside = 1 if parts[:1] == ["targeting"] else 3 if len(parts) > 2 and parts[0] == "arms" and parts[2] == "payload" else None
        if inside is not None and len(parts) > inside:
            parts, message = parts[:inside], f"{'.'.join(parts[inside:])}: {message}"
        name = ".".join(parts) or "form"
        if name in parsed.errors:  # the form's own reading already said what is wrong there, in its terms
            continue
        errors.setdefault(name, []).append(message)
    return errors


def input_name(error_field: str, values: Mapping[str, str]) -> str:
    """The input an error's field names: a schedule parameter's input is under the chosen type (for the summary's links)."""
    parts = error_field.split(".")
    if len(parts) == 3 and parts[0] == "arms" and parts[2] == "schedule":
        return f"arms.{parts[1]}.schedule.type"  # the schedule as a whole (a type not offered): its Type select
    if len(parts) == 4 and parts[0] == "arms" and parts[2] == "schedule" and parts[3] not in ("type", "action", "multiplier"):
        kind = values.get(f"arms.{parts[1]}.schedule.type", "")
        if kind in SCHEDULES:
            return f"arms.{parts[1]}.schedule.{kind}.{parts[3]}"
    return error_field


def _datetime_local(iso: str | None) -> str:
    """A stored time (any UTC offset) as a datetime-local value in UTC: to the minute when that is all
    it has, else to the second or millisecond (the input's finest), so that a save keeps it."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso).astimezone(timezone.utc)
    except (ValueError, OverflowError):  # year 1 at +01:00 is before Python's first instant
        return iso  # shown as stored; the schema names it if it is saved so
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]
    return moment.strftime("%Y-%m-%dT%H:%M:%S" if moment.second else "%Y-%m-%dT%H:%M")


def _plain(value: Any) -> str:
    """A stored number as the form shows it: whole numbers without a fraction (so they stay integers), others exactly."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def values_of(exp: Mapping[str, Any]) -> dict[str, str]:
    """A stored experiment as the form's field values, for the edit form."""
    v: dict[str, str] = {
        "key": exp["key"], "name": exp["name"], "description": exp.get("description") or "", "type": exp["type"],
        "traffic": _plain(exp["traffic"]), "layer": exp.get("layer") or "", "primary_metric": exp.get("primary_metric") or "",
        "targeting": json.dumps(exp["targeting"], indent=2) if exp.get("targeting") else "",
    }
    for k, value in (exp.get("bandit") or {}).items():
        v[f"bandit.{k}"] = "" if value is None else _plain(value)
    for i, arm in enumerate(exp["arms"]):
        p = f"arms.{i}."
        v[p + "key"], v[p + "weight"] = arm["key"], _plain(arm.get("weight", 1))
        payload = arm.get("payload")
        choice = recommender_choice(payload)
        if choice is not None:
            v[p + "recommender"] = choice
            payload = {k: value for k, value in payload.items() if k != "recommender"}
        v[p + "payload"] = json.dumps(payload) if payload else ""
        s = arm.get("schedule")
        if s:
            v[p + "schedule.type"], v[p + "schedule.action"] = s["type"], s.get("action", "")
            for param in schedule_fields().get(s["type"], []):
                if param.name in s:
                    v[f"{p}schedule.{s['type']}.{param.name}"] = _plain(s[param.name])
            if s.get("multiplier"):
                m = s["multiplier"]
                v[p + "schedule.multiplier.factor"] = _plain(m["factor"])
                v[p + "schedule.multiplier.start"], v[p + "schedule.multiplier.end"] = _datetime_local(m["start"]), _datetime_local(m["end"])
                v[p + "schedule.multiplier.start.was"], v[p + "schedule.multiplier.end.was"] = m["start"], m["end"]
    for i, metric in enumerate(exp.get("metrics") or []):
        v[f"metrics.{i}.key"], v[f"metrics.{i}.kind"] = metric["key"], metric.get("kind", "binary")
        if not metric.get("higher_is_better", True):
            v[f"metrics.{i}.lower_is_better"] = "yes"
    v["guardrails"] = ", ".join(exp.get("guardrails") or [])
    return {**v, **analysis_values(exp.get("analysis") or {})}


def analysis_values(analysis: Mapping[str, Any]) -> dict[str, str]:
    """Analysis settings as the form's field values; those left out read as the defaults' cuped_days."""
    v = {f"analysis.{name}": "yes" for name in ("sequential", "cuped") if analysis.get(name)}
    v["analysis.cuped_days"] = _plain(analysis.get("cuped_days", AnalysisSettings.cuped_days))
    return v


def row_count(values: Mapping[str, str], group: str, minimum: int, extra: int) -> int:
    """How many rows to draw: those with values, at least `minimum`, plus `extra` blank ones, at most the API's bound."""
    rows = _rows(values, group)
    return min(max((rows[-1] + 1) if rows else 0, minimum) + extra, MAX_ROWS)
