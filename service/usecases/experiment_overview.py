"""The console's view of experiments beyond single API answers: exposed users so far with the SRM check, and what
each recommender arm serves in words."""
from __future__ import annotations

from typing import Any

from experiments.definitions import LIVE
from experiments.stats import sample_ratio_mismatch
from service.store import exposures, model_versions
from service.store.database import Database
from service.store.state import shared_state
from service.usecases import experiments, recommendations


def experiments_overview(db: Database) -> list[dict[str, Any]]:
    """Every experiment, newest first, with exposed users so far and, for A/B tests, the SRM check of those exposures."""
    counts = exposures.exposure_counts(db)
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


def arm_spec(db: Database, key: str, arm: str) -> dict[str, Any]:
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


def arm_recommender(db: Database, spec: dict[str, Any]) -> str | None:
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
