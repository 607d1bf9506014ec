"""Assignment: sticky arms from a hash (A/B) or a bandit policy, and exposures recorded once.

A user this process answered before costs no query (`ExperimentCache`); any other
costs one read (`store.exposures.state`), or for an untargeted A/B experiment one
write that also answers a stored exposure. A new user is placed by hash (A/B) or
by the policy over the arms' current statistics (bandit), and the exposure is
written once, whatever the races between workers and hosts.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from experiments.assignment import ab_arm, bandit_draw, enrolled, pick
from experiments.layers import position
from experiments.targeting import BALANCE_PREFIX, BUILTIN_ATTRIBUTES
from service.errors import NotFound
from service.store import experiments as experiment_store
from service.store import exposures
from service.store.database import Database
from service.store.experiments import Stamp, StoredDefinition
from service.timestamps import iso
from service.usecases.attributes import user_attributes
from service.usecases.bandit_allocation import bandit_allocation
from service.usecases.experiment_cache import ExperimentCache


def _answer(
    key: str, user_id: str, d: StoredDefinition | None, exposure: exposures.Exposure | None, reason: str | None = None
) -> dict[str, Any]:
    """The answer in the HTTP model's shape and field order, so that it is written as JSON without a model object."""
    if exposure is None or d is None:
        return {
            "experiment": key, "user_id": user_id, "enrolled": False, "arm": None,
            "payload": None, "schedule": None, "probability": None, "reason": reason, "exposed_at": None,
        }
    spec = d.arms_json[exposure.arm]
    return {
        "experiment": key,
        "user_id": user_id,
        "enrolled": True,
        "arm": exposure.arm,
        "payload": spec.get("payload") or {},
        "schedule": spec.get("schedule"),
        "probability": exposure.probability,
        "reason": None,
        "exposed_at": iso(exposure.exposed_at),
    }


def _choose(db: Database, d: StoredDefinition, user_id: str, now: float) -> tuple[str, float]:
    exp = d.experiment
    weights = [a.weight for a in exp.arms]
    if exp.type == "ab":
        index = ab_arm(d.salt, exp.key, user_id, weights)
        return exp.arms[index].key, weights[index] / sum(weights)
    probabilities = bandit_allocation(db, d, now)
    index = pick(list(probabilities), bandit_draw(d.salt, exp.key, user_id))
    return exp.arms[index].key, float(probabilities[index])


def _eligible(db: Database, d: StoredDefinition, user_id: str, now: float, attributes: Mapping[str, Any]) -> str | None:
    """Why a new user may not be enrolled (layer, traffic, targeting), or None when they may."""
    exp = d.experiment
    if exp.layer is not None:
        if d.layer_range is None or not d.layer_range.holds(position(exp.layer, user_id)):
            return "layer"
    elif not enrolled(d.salt, exp.key, user_id, exp.traffic):
        return "traffic"
    if exp.targeting is not None and not exp.targeting.matches(user_attributes(db, user_id, now, attributes, exp.targeting.attributes())):
        return "targeting"
    return None


def why_not_enrolled(db: Database, cache: ExperimentCache, key: str, user_id: str, now: float) -> tuple[str | None, list[str]]:
    """For a running experiment the user is not in: the reason an assignment now would give (None: they would be
    enrolled), judged on stored behaviour alone, and the attributes of its rule that only a request can send."""
    d, _ = cache.current(db, key)
    targeting = d.experiment.targeting
    from_request = sorted(a for a in (targeting.attributes() if targeting else set()) if a not in BUILTIN_ATTRIBUTES and not a.startswith(BALANCE_PREFIX))
    return _eligible(db, d, user_id, now, {}), from_request


# Called with the chosen arm's payload just before a new exposure is written; what it raises writes none.
BeforeExposure = Callable[[Mapping[str, Any]], None]


def assign(
    db: Database, cache: ExperimentCache, key: str, user_id: str, now: float, attributes: Mapping[str, Any] | None = None,
    before_exposure: BeforeExposure | None = None,
) -> dict[str, Any]:
    """The user's assignment in one experiment, recording the first exposure at `now`.

    An exposed user keeps their arm whatever their attributes or the traffic say later: stickiness wins.
    A user this process answered before costs no query while the experiment's stamp is trusted; a user
    new to an untargeted A/B experiment costs one statement, which also answers an exposure stored before.
    `before_exposure` may refuse a new user's arm (a recommender arm whose model cannot load here).
    """
    stamp = cache.stamp(key)
    if stamp is None:
        return _assign_read(db, cache, key, user_id, now, attributes, before_exposure)
    if stamp.status == "stopped":
        return _answer(key, user_id, None, None, "not_running")
    d = cache.get(db, key, stamp)
    exposure = cache.exposure(key, user_id)
    if exposure is not None:
        return _answer(key, user_id, d, exposure)
    exp = d.experiment
    if stamp.status != "running" or exp.type != "ab" or exp.targeting is not None:
        # A paused experiment answers only earlier exposures; a bandit's choice or a targeting rule costs reads
        # that a returning user should not pay for, so both look for the exposure first.
        return _assign_read(db, cache, key, user_id, now, attributes, before_exposure)
    if _eligible(db, d, user_id, now, {}) is None:
        enrolled_now = _enrol(db, cache, d, user_id, now, before_exposure)
        if enrolled_now is not None:
            return enrolled_now
    # Refused (an exposure from before a change of traffic still holds), or the experiment changed since
    # this process read it: the stored state decides.
    return _assign_read(db, cache, key, user_id, now, attributes, before_exposure)


_READS = 3  # reads before answering not_running for an experiment that changed between every read and its write


def _assign_read(
    db: Database, cache: ExperimentCache, key: str, user_id: str, now: float, attributes: Mapping[str, Any] | None,
    before_exposure: BeforeExposure | None = None, reads: int = _READS,
) -> dict[str, Any]:
    """Assignment from one read of the experiment's stamp with the user's exposure."""
    read_at = time.monotonic()
    found = exposures.state(db, key, user_id)
    if found is None:
        raise NotFound("experiment", key)
    cache.note(key, found.stamp, read_at)
    status = found.stamp.status
    if status in ("draft", "stopped"):
        return _answer(key, user_id, None, None, "not_running")
    d = cache.get(db, key, found.stamp)
    if found.exposure is not None:
        cache.remember(key, user_id, found.exposure)
        return _answer(key, user_id, d, found.exposure)
    if status != "running":
        return _answer(key, user_id, d, None, "not_running")
    refused = _eligible(db, d, user_id, now, attributes or {})
    if refused is not None:
        return _answer(key, user_id, d, None, refused)
    enrolled_now = _enrol(db, cache, d, user_id, now, before_exposure)
    if enrolled_now is not None:
        return enrolled_now
    if reads > 1:  # changed between the read and the write: again by what is stored now
        return _assign_read(db, cache, key, user_id, now, attributes, before_exposure, reads - 1)
    return _answer(key, user_id, d, None, "not_running")


def _enrol(
    db: Database, cache: ExperimentCache, d: StoredDefinition, user_id: str, now: float, before_exposure: BeforeExposure | None = None,
) -> dict[str, Any] | None:
    """Choose an arm and write the exposure, or answer the one stored first; None if the experiment no longer runs as `d` says."""
    key = d.experiment.key
    arm, probability = _choose(db, d, user_id, now)
    if before_exposure is not None:
        before_exposure(next(a.payload for a in d.experiment.arms if a.key == arm))
    bandit = d.experiment.bandit
    waits = bandit is not None and bandit.attribution_hours is not None
    chosen_by = Stamp("running", d.revision, d.salt)
    exposure = exposures.expose(db, key, chosen_by, user_id, arm, probability, now, counts_pull=d.experiment.type == "bandit", waits=waits)
    if exposure is None:
        return None
    cache.remember(key, user_id, exposure)
    return _answer(key, user_id, d, exposure)


def assign_many(db: Database, cache: ExperimentCache, keys: list[str], user_id: str, now: float, attributes: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The user's assignment in each experiment, in order; NotFound, with nothing recorded, when any key names none.

    Keys whose stamp this process trusts (never a draft's, which can be deleted) exist without asking again.
    """
    missing = None if all(cache.stamp(key) is not None for key in keys) else experiment_store.first_missing(db, keys)
    if missing is not None:
        raise NotFound("experiment", missing)
    return [_assign_checked(db, cache, key, user_id, now, attributes) for key in keys]


def _assign_checked(db: Database, cache: ExperimentCache, key: str, user_id: str, now: float, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # Only a draft can be deleted, so a key gone since the check named a draft: it would not have
    # enrolled anyone, and failing now would leave the exposures written before it.
    try:
        return assign(db, cache, key, user_id, now, attributes)
    except NotFound:
        return _answer(key, user_id, None, None, "not_running")
