"""Outcomes reported by storefronts: validated against their experiments, stored once, fed to bandits."""
from __future__ import annotations

from typing import Any, Sequence

from experiments.definitions import Experiment
from service.errors import Invalid, NotFound
from service.store import outcomes as store
from service.store.database import Database
from service.store.outcomes import Counts
from service.usecases.experiment_cache import ExperimentCache


def report(db: Database, cache: ExperimentCache, outcomes: Sequence[dict[str, Any]]) -> Counts:
    """Refuse the whole batch if any outcome names an unknown experiment or metric; else store it in one transaction."""
    definitions: dict[str, Experiment] = {}
    for key in {o["experiment"] for o in outcomes}:
        try:
            definitions[key] = cache.current(db, key)[0].experiment
        except NotFound:  # reported per index by check_batch
            continue
    check_batch(outcomes, definitions)
    return store.record(db, outcomes, definitions)


def check_batch(outcomes: Sequence[dict[str, Any]], definitions: dict[str, Experiment]) -> None:
    """Refuse the whole batch (naming each index) if any outcome names an unknown experiment or a metric it does not report."""
    details = []
    for i, o in enumerate(outcomes):
        exp = definitions.get(o["experiment"])
        if exp is None:
            details.append({"field": f"outcomes.{i}.experiment", "index": i, "message": f"no experiment {o['experiment']!r}"})
        elif exp.reported_metric(o["metric"]) is None:
            known = ", ".join(m.key for m in exp.metrics if not m.builtin)
            why = ("is built in (derived from events)" if o["metric"] in {m.key for m in exp.metrics}
                   else f"is not a metric of this experiment (reported metrics: {known})" if known
                   else "is not a metric of this experiment, which declares no reported metrics")
            details.append({"field": f"outcomes.{i}.metric", "index": i, "message": f"{o['metric']!r} {why}"})
    if details:
        raise Invalid.many(details)
