"""What the console shows beyond single API answers: experiments with their users so far, and one user's whole picture."""
from __future__ import annotations

import time
from typing import Any

from experiments.definitions import LIVE
from experiments.stats import sample_ratio_mismatch
from experiments.targeting import BUILTIN_ATTRIBUTES
from service.store import console as store
from service.store import model_versions
from service.store.database import Database
from service.store.state import shared_state
from service.text import bidi_escaped
from service.timestamps import iso
from service.usecases import assignment, experiments, recommendations, rewards
from service.usecases.experiment_cache import ExperimentCache
from service.usecases.attributes import user_attributes
from service.usecases.serving import ModelCache

RECENT_EVENTS = 50
LEDGER_ROWS = 20  # the newest reward actions a user page shows for each experiment


def experiments_overview(db: Database) -> list[dict[str, Any]]:
    """Every experiment, newest first, with exposed users so far and, for A/B tests, the SRM check of those exposures."""
    counts = store.exposure_counts(db)
    out = []
    for exp in experiments.list_all(db):
        per_arm = counts.get(exp["key"], {})
        srm = None
        if exp["type"] == "ab":
            found = sample_ratio_mismatch([per_arm.get(a["key"], 0) for a in exp["arms"]], [float(a["weight"]) for a in exp["arms"]])
            if found is not None:
                srm = {"p_value": found.p_value, "mismatch": found.mismatch}
        out.append({**exp, "users": sum(per_arm.values()), "users_per_arm": per_arm, "srm": srm})
    return out


def _arm(db: Database, key: str, arm: str) -> dict[str, Any]:
    """An arm's definition as the API gives it."""
    return next((a for a in experiments.get(db, key)["arms"] if a["key"] == arm), {})


def _model_words(db: Database, version: str) -> str:
    """A model version with its algorithm: an arm's version id alone cannot show that it is the wrong model."""
    record = model_versions.get(db, version)
    return f"{record.algorithm} model {version}" if record is not None else f"model {version}"


def _source_words(db: Database, source: recommendations.Source, current: str | None = None) -> str:
    """A recommender source in words; `current` says which version the active model is now."""
    if source.version is not None:
        model = _model_words(db, source.version)
        return f"the most popular items, as {model} counted them" if source.popular else model
    now = f" ({current})" if current else ""
    return f"the most popular items, as the active model counts them{now}" if source.popular else f"the active model{now}"


def _arm_recommender(db: Database, spec: dict[str, Any]) -> str | None:
    """What an arm's payload has its users' recommendations come from, in words; None when it names nothing."""
    payload = spec.get("payload")
    if payload is None or "recommender" not in payload:
        return None
    return _source_words(db, recommendations.recommender_of(payload))


def _names_recommenders(exp: dict[str, Any]) -> bool:
    return any("recommender" in (arm.get("payload") or {}) for arm in exp["arms"])


def arm_recommenders(db: Database, exp: dict[str, Any]) -> dict[str, str] | None:
    """What each arm's recommendations come from, in words, for an experiment some arm of which names a
    recommender (None otherwise): an arm that names none serves whatever model is active, so it says which."""
    if not _names_recommenders(exp):
        return None
    active = shared_state(db).active_version
    current = f"currently {_model_words(db, active)}" if active else "none yet, so popular items"
    return {arm["key"]: _source_words(db, recommendations.recommender_of(arm.get("payload")), current) for arm in exp["arms"]}


def following_active(db: Database) -> list[tuple[str, list[tuple[str, bool]]]]:
    """Running and paused experiments of recommender arms, each with its arms that serve whatever model is active
    and whether each serves popular items: activating another version changes what those arms' users are shown."""
    out = []
    for status in LIVE:
        for exp in experiments.list_all(db, status):
            if _names_recommenders(exp):
                sources = [(a["key"], recommendations.recommender_of(a.get("payload"))) for a in exp["arms"]]
                arms = [(key, source.popular) for key, source in sources if source.version is None]
                if arms:
                    out.append((exp["key"], arms))
    return out


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
    events = store.recent_events(db, user_id, RECENT_EVENTS + 1)  # one more, to tell whether older ones are left out
    exposures = store.user_exposures(db, user_id)
    answer = recommendations.for_user(db, models, user_id, n, None, set())
    now = time.time()
    arms = {x.experiment: _arm(db, x.experiment, x.arm) for x in exposures}
    return {
        "user_id": user_id,
        "behaviour": user_attributes(db, user_id, now, {}, set(BUILTIN_ATTRIBUTES)),
        "not_enrolled": _not_enrolled(db, cache, user_id, {x.experiment for x in exposures}, now),
        "events": [{"event_id": e.event_id, "item_id": e.item_id, "type": e.type, "timestamp": iso(e.ts), "value": e.value} for e in events[:RECENT_EVENTS]],
        "older_events": len(events) > RECENT_EVENTS,
        "recommendations": {"strategy": answer.strategy, "model_version": answer.model_version, "items": [{"item_id": i, "score": s} for i, s in answer.items]},
        "assignments": [
            {"experiment": x.experiment, "status": x.status, "arm": x.arm, "probability": x.probability, "exposed_at": iso(x.exposed_at),
             "recommender": _arm_recommender(db, arms[x.experiment])}
            for x in exposures
        ],
        "ledgers": [{**rewards.latest_ledger(db, x.experiment, user_id, LEDGER_ROWS), "rewarding": arms[x.experiment].get("schedule") is not None} for x in exposures],
    }
