"""One user's whole picture for the console: recent events, stored behaviour, recommendations, assignments (and why
not), and reward ledgers."""
from __future__ import annotations

import time
from typing import Any

from experiments.targeting import BUILTIN_ATTRIBUTES
from service.store import user_history
from service.store.database import Database
from service.text import bidi_escaped
from service.timestamps import iso
from service.usecases import assignment, experiments, recommendations, rewards
from service.usecases.attributes import user_attributes
from service.usecases.experiment_cache import ExperimentCache
from service.usecases.experiment_overview import arm_recommender, arm_spec
from service.usecases.serving import ModelCache

RECENT_EVENTS = 50
LEDGER_ROWS = 20  # the newest reward actions a user page shows for each experiment


_WHY = {
    "layer": "their position in layer {layer} falls outside this experiment's range",
    "traffic": "outside the experiment's traffic share ({traffic})",
    "targeting": "its targeting rule does not match what is stored about them",
}


def _not_enrolled(db: Database, cache: ExperimentCache, user_id: str, exposed: set[str], now: float) -> list[dict[str, Any]]:
    """Each running experiment the user is not in, and what an assignment now would say and why (no exposure is recorded)."""
    out = []
    # One read of the experiment's stamp each, and one of the user's behaviour for each targeted one: a page
    # for one user, not a hot path.
    for exp in experiments.list_all(db, "running"):
        if exp["key"] in exposed:
            continue
        reason, from_request = assignment.why_not_enrolled(db, cache, exp["key"], user_id, now)
        traffic = exp.get("traffic", 1.0)
        share = f"{traffic:.0%}" if 0.01 <= traffic <= 0.99 else f"{traffic:.3g}"
        said = "would be enrolled at their next assignment" if reason is None else _WHY[reason].format(layer=exp.get("layer"), traffic=share)
        # A missing attribute fails every condition, so what a request sends can only add matches: it matters
        # only where stored behaviour alone does not match.
        if from_request and reason == "targeting":
            said += f"; the rule also reads {', '.join(bidi_escaped(a) for a in from_request)}, which only the storefront's request sends, so its answer may differ"
        out.append({"experiment": exp["key"], "reason": reason, "said": said})
    return out


def user_profile(db: Database, models: ModelCache, cache: ExperimentCache, user_id: str, n: int = 10) -> dict[str, Any]:
    """A user's recent events, stored behaviour, current recommendations, experiment assignments (and why not), and reward ledgers."""
    events = user_history.recent_events(db, user_id, RECENT_EVENTS + 1)  # one more, to tell whether older ones are left out
    exposures = user_history.user_exposures(db, user_id)
    answer = recommendations.for_user(db, models, user_id, n, None, set())
    now = time.time()
    arms = {x.experiment: arm_spec(db, x.experiment, x.arm) for x in exposures}
    return {
        "user_id": user_id,
        "behaviour": user_attributes(db, user_id, now, {}, set(BUILTIN_ATTRIBUTES)),
        "not_enrolled": _not_enrolled(db, cache, user_id, {x.experiment for x in exposures}, now),
        "events": [{"event_id": e.event_id, "item_id": e.item_id, "type": e.type, "timestamp": iso(e.ts), "value": e.value} for e in events[:RECENT_EVENTS]],
        "older_events": len(events) > RECENT_EVENTS,
        "recommendations": {"strategy": answer.strategy, "model_version": answer.model_version, "items": [{"item_id": i, "score": s} for i, s in answer.items]},
        "assignments": [
            {"experiment": x.experiment, "status": x.status, "arm": x.arm, "probability": x.probability, "exposed_at": iso(x.exposed_at),
             "recommender": arm_recommender(db, arms[x.experiment])}
            for x in exposures
        ],
        "ledgers": [{**rewards.latest_ledger(db, x.experiment, user_id, LEDGER_ROWS), "rewarding": arms[x.experiment].get("schedule") is not None} for x in exposures],
    }
