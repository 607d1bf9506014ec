"""Outcomes reported by storefronts: validated against their experiments, stored once, fed to bandits."""
from __future__ import annotations

from typing import Any, Sequence

from experiments.definitions import Experiment
from service.errors import NotFound
from service.store import outcomes as store
from service.store.database import Database
from service.store.outcomes import Counts
from service.usecases.assignment import ExperimentCache


def report(db: Database, cache: ExperimentCache, outcomes: Sequence[dict[str, Any]]) -> Counts:
    """Refuse the whole batch if any outcome names an unknown experiment or metric; else store it in one transaction."""
    definitions: dict[str, Experiment] = {}
    for key in {o["experiment"] for o in outcomes}:
        try:
            definitions[key] = cache.current(db, key)[0].experiment
        except NotFound:  # reported per index by check_batch
            continue
    store.check_batch(outcomes, definitions)
    return store.record(db, outcomes, definitions)
