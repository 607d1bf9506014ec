"""Experiments: define, change while draft, start, pause, stop, list."""
from __future__ import annotations

import logging
from typing import Any, Callable

from experiments.definitions import BUILTIN_METRICS, Metric
from experiments.layers import free_share
from service.errors import Conflict, Invalid
from service.store import experiments as store
from service.store import layers, lifecycle
from service.store import outcomes as outcomes_store
from service.store.database import Database
from service.store.experiment_codec import from_row, to_json
from service.store.experiments import Stamp
from service.store.lifecycle import StartCheck
from service.usecases.experiment_cache import ExperimentCache
from service.usecases.recommendations import recommender_of

log = logging.getLogger(__name__)

ARM_DEFAULTS: dict[str, Any] = {"weight": 1.0, "payload": {}, "schedule": None}
NEW_DEFAULTS: dict[str, Any] = {"description": "", "type": "ab", "traffic": 1.0, "metrics": [], "bandit": None}


def _complete(fields: dict[str, Any]) -> dict[str, Any]:
    """Every arm with all its fields, as stored."""
    if fields.get("arms") is not None:
        fields["arms"] = [{**ARM_DEFAULTS, **arm} for arm in fields["arms"]]
    return fields


def _is_version(value: Any) -> bool:
    # No NUL: PostgreSQL cannot hold one in text, so the check at start could not even look it up.
    return isinstance(value, str) and 1 <= len(value) <= 64 and "\x00" not in value


def _check_recommenders(fields: dict[str, Any]) -> None:
    """An arm's payload may name the recommender its users get: one model version, or popularity (of one version)."""
    for i, arm in enumerate(fields.get("arms") or []):
        payload = arm.get("payload") or {}
        if "recommender" not in payload:
            continue
        spec = payload["recommender"]
        by_version = isinstance(spec, dict) and set(spec) == {"model_version"} and _is_version(spec["model_version"])
        popular = isinstance(spec, dict) and spec.get("algorithm") == "popularity" and set(spec) <= {"algorithm", "model_version"} \
            and ("model_version" not in spec or _is_version(spec["model_version"]))
        if not (by_version or popular):
            raise Invalid.field(
                f"arms.{i}.payload.recommender",
                'must be {"model_version": "<a version>"}, {"algorithm": "popularity"} or {"algorithm": "popularity", "model_version": "<a version>"}',
            )


def _versions_named(arms: list[dict[str, Any]]) -> dict[str, str]:
    """The model version each arm that names one serves, by the arm's key."""
    return {arm["key"]: version for arm in arms if (version := recommender_of(arm.get("payload")).version) is not None}


def _check_versions(limit: int) -> Callable[[list[dict[str, Any]], StartCheck], None]:
    """The check a start makes of the arms it starts with: every model version they name must be ready, and
    the versions running and paused experiments serve, with these, at most `limit` (each stays loaded in
    every worker). A start that adds no version is never refused by the limit."""
    def check(arms: list[dict[str, Any]], started: StartCheck) -> None:
        named = _versions_named(arms)
        if not named:
            return
        status = started.versions_status(set(named.values()))
        for arm_key, version in named.items():
            if status.get(version) != "ready":
                state = "does not exist" if version not in status else f"is {status[version]}"
                raise Conflict(f"arm {arm_key!r} serves model version {version!r}, which {state}; only a ready version can serve an experiment")
        served = {version for arms_of in started.arms_of_other_live() for version in _versions_named(arms_of).values()}
        added = set(named.values()) - served
        # Resuming adds nothing: a paused experiment counts as serving its versions (even past a limit lowered since).
        if added and not started.resuming and len(served | added) > limit:
            raise Conflict(
                f"running and paused experiments already serve {len(served)} model version(s) ({', '.join(sorted(served))}) and this one would "
                f"add {len(added)}, past the limit of {limit} that every worker keeps loaded (MAX_SERVED_VERSIONS); "
                "stop an experiment that serves a version, or name versions already served"
            )

    return check


def create(db: Database, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate the whole definition, store it as a draft, answer it."""
    _check_recommenders(fields)
    created = to_json(store.create(db, _complete({**NEW_DEFAULTS, **fields})))
    log.info("experiment created", extra={"experiment": created["key"], "type": created["type"]})
    return created


def get(db: Database, key: str) -> dict[str, Any]:
    """One experiment."""
    return to_json(store.get(db, key))


def get_with_metrics(db: Database, key: str) -> tuple[dict[str, Any], dict[str, Metric]]:
    """One experiment, and every metric it can be read on by key: its own, then the built-in ones it does not redefine."""
    row = store.get(db, key)
    exp = from_row(row)
    return to_json(row), {name: exp.metric(name) for name in dict.fromkeys([*(m.key for m in exp.metrics), *BUILTIN_METRICS])}


def list_all(db: Database, status: str | None = None) -> list[dict[str, Any]]:
    """Experiments, newest first, optionally of one status."""
    return [to_json(r) for r in store.list_all(db, status)]


def change(db: Database, cache: ExperimentCache, key: str, changes: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    """Apply the fields sent (design fields only while draft); with `revision`, only to the experiment as it was at that revision."""
    _check_recommenders(changes)
    changed = store.patch(db, key, _complete(changes), revision)
    cache.changed(key, Stamp.of(changed))
    return to_json(changed)


def remove(db: Database, cache: ExperimentCache, key: str) -> None:
    """Delete a draft."""
    store.remove(db, key)
    cache.changed(key, None)
    log.info("experiment deleted", extra={"experiment": key})


def move(db: Database, cache: ExperimentCache, key: str, action: str, max_served_versions: int) -> dict[str, Any]:
    """Start, pause or stop; this process answers by the new status at once, others within STATUS_SECONDS.

    A start may bring the model versions running and paused experiments name to at most `max_served_versions`."""
    check = _check_versions(max_served_versions) if action == "start" else None
    moved = lifecycle.move(db, key, action, check_start=check, on_stop=outcomes_store.withdraw_from)
    cache.changed(key, Stamp.of(moved))
    log.info("experiment moved", extra={"experiment": key, "action": action, "status": moved.status, "revision": moved.revision})
    return to_json(moved)


def layer(db: Database, name: str) -> dict[str, Any]:
    """The ranges running and paused experiments own in a layer, and the share still free."""
    ranges = layers.layer_ranges(db, name)
    return {"layer": name, "ranges": [{"experiment": r.experiment, "start": r.start, "end": r.end} for r in ranges], "free": free_share(ranges)}
