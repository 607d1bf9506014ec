"""Assignment: sticky arms from a hash (A/B) or a bandit policy, and exposures recorded once.

A user this process answered before costs no query (`ExperimentCache`); any other
costs one read (`store.exposures.state`), or for an untargeted A/B experiment one
write that also answers a stored exposure. A new user is placed by hash (A/B) or
by the policy over the arms' current statistics (bandit), and the exposure is
written once, whatever the races between workers and hosts.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping

import numpy as np

from bandits.base import ArmStats, with_floor
from bandits.registry import make_policy
from experiments.assignment import ab_arm, bandit_draw, enrolled, pick
from experiments.definitions import Experiment
from experiments.layers import position
from service.errors import NotFound
from service.store import experiments as experiment_store
from service.store import exposures
from service.store.database import Database
from service.store.experiments import Stamp, StoredDefinition
from service.timestamps import iso
from service.usecases.attributes import BALANCE_PREFIX, BUILTIN_ATTRIBUTES, user_attributes


STATUS_SECONDS = 1.0  # how long a process trusts an experiment's status: a stop reaches other workers and hosts within it
REMEMBERED_EXPOSURES = 50_000  # per process: some 20 MB
# Parsed definitions per process: the most recently used, by count and by the size of their arms' JSON
# (an arm's payload may hold 10,000 values, so one definition can take tens of megabytes). Room for
# two definitions as large as a request may send, so that two running ones do not evict each other.
REMEMBERED_DEFINITIONS = 256
REMEMBERED_DEFINITION_BYTES = 64 * 2**20


class ExperimentCache:
    """What one process remembers about experiments, each part exact or bounded in time.

    - Definitions by stamp (revision and salt): a revision never changes, so neither do they.
    - Each experiment's stamp, for at most STATUS_SECONDS after the read began; this process's
      own changes (`changed`) take effect at once. A draft's is never trusted: a draft can
      be deleted, and its start must be seen at once.
    - The users' exposures it has answered most recently: an exposure is written once and never
      changes, so a user this process answered before costs no query at all.
    """

    def __init__(self, status_seconds: float = STATUS_SECONDS, exposures_kept: int = REMEMBERED_EXPOSURES) -> None:
        self._definitions: OrderedDict[str, tuple[int, StoredDefinition]] = OrderedDict()
        self._definition_bytes = 0
        self._stamps: dict[str, tuple[float, Stamp]] = {}
        self._exposures: OrderedDict[tuple[str, str], exposures.Exposure] = OrderedDict()
        self._status_seconds = status_seconds
        self._exposures_kept = exposures_kept
        self._lock = threading.Lock()

    def current(self, db: Database, key: str) -> tuple[StoredDefinition, str]:
        """The experiment's definition at its current revision and its status, read now; NotFound if it does not exist."""
        read_at = time.monotonic()
        stamp = experiment_store.stamp(db, key)
        self.note(key, stamp, read_at)
        return self.get(db, key, stamp), stamp.status

    def get(self, db: Database, key: str, stamp: Stamp) -> StoredDefinition:
        """The definition the stamp names (or a newer one), loading it once per process."""
        with self._lock:
            found = self._definitions.get(key)
            if found is not None:
                self._definitions.move_to_end(key)
        cached = found[1] if found is not None else None
        if cached is not None and cached.revision == stamp.revision and cached.salt == stamp.salt:
            return cached
        loaded = experiment_store.load_definition(db, key)
        size = len(json.dumps(loaded.arms_json, default=str)) + len(loaded.experiment.description)
        with self._lock:
            replaced = self._definitions.pop(key, None)
            self._definition_bytes -= replaced[0] if replaced is not None else 0
            self._definitions[key] = (size, loaded)
            self._definition_bytes += size
            while len(self._definitions) > 1 and (
                len(self._definitions) > REMEMBERED_DEFINITIONS or self._definition_bytes > REMEMBERED_DEFINITION_BYTES
            ):
                self._drop(next(iter(self._definitions)))
        return loaded

    def _drop(self, key: str) -> None:
        """Forget a definition and its stamp; under `_lock`."""
        gone = self._definitions.pop(key, None)
        if gone is not None:
            self._definition_bytes -= gone[0]
        self._stamps.pop(key, None)

    def stamp(self, key: str) -> Stamp | None:
        """The experiment's stamp if its read began less than STATUS_SECONDS ago and it is not a draft, else None."""
        known = self._stamps.get(key)
        if known is None or known[0] < time.monotonic() or known[1].status == "draft":
            return None
        return known[1]

    def note(self, key: str, stamp: Stamp, read_at: float) -> None:
        """Remember a stamp read from the database by a read that began at `read_at` (time.monotonic())."""
        with self._lock:
            known = self._stamps.get(key)
            if known is not None and known[1].salt == stamp.salt and known[1].revision > stamp.revision:
                return  # a slower read began before a newer one, or before this process's own change
            if known is None and len(self._stamps) >= REMEMBERED_DEFINITIONS:  # stamps live a second: drop the lapsed ones
                now = time.monotonic()
                self._stamps = {k: v for k, v in self._stamps.items() if v[0] > now}
            self._stamps[key] = (read_at + self._status_seconds, stamp)

    def changed(self, key: str, stamp: Stamp | None) -> None:
        """This process changed the experiment (None: deleted it); its answers follow at once."""
        if stamp is None:
            with self._lock:
                self._drop(key)
        else:
            self.note(key, stamp, time.monotonic())

    def exposure(self, key: str, user_id: str) -> exposures.Exposure | None:
        """The user's exposure, if this process has seen it recently."""
        with self._lock:
            found = self._exposures.get((key, user_id))
            if found is not None:
                self._exposures.move_to_end((key, user_id))
            return found

    def remember(self, key: str, user_id: str, exposure: exposures.Exposure) -> None:
        """Keep an exposure read or written, forgetting the least recently used beyond the bound."""
        with self._lock:
            self._exposures[(key, user_id)] = exposure
            if len(self._exposures) > self._exposures_kept:
                self._exposures.popitem(last=False)


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


def bandit_allocation(db: Database, d: StoredDefinition, now: float | None = None) -> np.ndarray:
    """The bandit's probabilities for the next new user, floor included."""
    exp = d.experiment
    assert exp.bandit is not None
    if exp.bandit.attribution_hours is not None:  # pulls whose window has passed count now, as failures or zeros
        # By the server's clock: a client's timestamp from the future must not close other users' windows.
        today = time.time() if now is None else min(now, time.time())
        exposures.mature(db, exp.key, today - exp.bandit.attribution_hours * 3600)
    rows = exposures.arm_stats(db, exp.key)
    zero = (0, 0.0, 0.0, 0.0)
    pulls, sums, sumsq, m2 = (list(col) for col in zip(*(rows.get(a.key, zero) for a in exp.arms)))
    stats = ArmStats.of(pulls, sums, sumsq, m2)
    policy = make_policy(exp.bandit.algorithm, exp.metric(exp.primary_metric).kind, exp.bandit.epsilon)
    return with_floor(policy.probabilities(stats), exp.bandit.min_probability)


def every_arm_possible(exp: Experiment) -> bool:
    """Whether the bandit gave every arm a chance above 0 with every user (positivity), as its
    inverse-propensity estimates need: a floor above 0, or a policy that explores every arm itself.
    An A/B test's arms all weigh above 0."""
    if exp.bandit is None or exp.bandit.min_probability > 0 or len(exp.arms) < 2:
        return True
    return make_policy(exp.bandit.algorithm, exp.metric(exp.primary_metric).kind, exp.bandit.epsilon).explores_every_arm()


def no_positivity_note(exp: Experiment) -> str:
    """Why a bandit's weighted estimates carry no interval when `every_arm_possible` is False."""
    assert exp.bandit is not None
    return (f"min_probability is 0 and {exp.bandit.algorithm} may give an arm no chance at all: users who could not get an arm "
            "say nothing of it, so the weighted estimates may be biased and come with no interval; a min_probability above 0 "
            "keeps every arm possible and makes them unbiased")


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
