"""Tuned training runs: validating the search a request asks for, and running it with every trial stored as it finishes."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from recommender.base import CannotTrain
from recommender.matrix import InteractionMatrix
from recommender.search_space import Dimension
from recommender.training import TrainingSettings
from recommender.tuning import Trial, TuneError, TuneSettings, search_space, tune
from service.errors import Invalid
from service.store import model_versions as store
from service.store.database import Database
from service.usecases.outages import through_outage

log = logging.getLogger(__name__)
TrialProgress = Callable[[int, int], None]


class Stopped(Exception):
    """The run was cancelled (or reported failed) while it ran: stop without storing anything more."""


@dataclass(frozen=True)
class TunePlan:
    """Validated tuning settings and the space they search."""

    settings: TuneSettings
    space: dict[str, Dimension]

    def stored(self) -> dict[str, Any]:
        """The settings as the version records them."""
        return {**asdict(self.settings), "space": dict(self.settings.space)}


def plan_tuning(algorithm: str, params: Mapping[str, Any], tune_request: Mapping[str, Any] | None) -> TunePlan | None:
    """The search a request asks for, or None; Invalid names the bad setting as `tune.<name>` (`tune.space.<parameter>`)."""
    if tune_request is None:
        return None
    try:
        settings = TuneSettings.parse(tune_request)
        return TunePlan(settings, search_space(algorithm, params, settings.space))
    except TuneError as exc:
        raise Invalid.field(f"tune.{exc.field}", exc.reason) from None


def search(
    db: Database,
    version: str,
    matrix: InteractionMatrix,
    algorithm: str,
    params: Mapping[str, Any],
    evaluation: TrainingSettings,
    tuning: TunePlan,
    say: Callable[[str], None],
    should_stop: Callable[[], bool],
    on_trial: TrialProgress | None = None,
    outage_seconds: float = 0.0,
) -> dict[str, Any]:
    """Run the trials, storing each with the run's progress (waiting out a database outage up to `outage_seconds`);
    the best trial's parameters, or Stopped."""
    settings = tuning.settings
    say(f"tuning {algorithm}: {settings.trials} trials over {', '.join(sorted(tuning.space))}, maximising {settings.metric}")

    def finished(trial: Trial, done: int) -> None:
        entry = {"params": trial.params, "metric": round(trial.metric, 6), "seconds": round(trial.seconds, 3)}
        if not through_outage("trial", lambda: store.add_trial(db, version, entry, {"trials_done": done, "trials": settings.trials}), outage_seconds):
            return  # settled meanwhile; the next should_stop says so
        say(f"trial {done}/{settings.trials}: {settings.metric} {trial.metric:.4f} in {trial.seconds:.1f} s with {trial.params}")
        if on_trial is not None:
            on_trial(done, settings.trials)

    def failed(params_of: dict[str, Any], why: str, done: int) -> None:
        # Counted as done, so that a run whose every trial the model refuses still shows it moving.
        if not through_outage("trial", lambda: store.add_trial(db, version, None, {"trials_done": done, "trials": settings.trials}), outage_seconds):
            return
        say(f"trial {done}/{settings.trials} failed with {params_of}: {why}")
        if on_trial is not None:
            on_trial(done, settings.trials)

    result = tune(
        matrix.confidence, algorithm, params, tuning.space, settings, evaluation.test_fraction, evaluation.eval_users,
        on_trial=finished, on_failed=failed, should_stop=should_stop, visits_of=matrix.visits,
    )
    best = result.best
    if result.failures:
        params_of, why = result.failures[0]
        say(f"{len(result.failures)} of {settings.trials} trials failed; the first, with {params_of}: {why}")
    if best is None and not result.stopped and result.failures:
        raise CannotTrain(f"every tuning trial failed; the first, with {result.failures[0][0]}: {result.failures[0][1]}")
    if result.stopped or best is None or should_stop():
        raise Stopped
    say(f"best of {len(result.trials)} trials: {settings.metric} {best.metric:.4f} with {best.params}")
    return dict(best.params)
