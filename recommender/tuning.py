"""Hyper-parameter search: seeded TPE trials (Optuna), each fitted and scored on one fixed holdout split."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, get_args, get_type_hints

import scipy.sparse as sp

from recommender.base import CannotTrain
from recommender.evaluation import evaluate, holdout_split
from recommender.models import ALGORITHMS, make_recommender
from recommender.search_space import Choice, Dimension, Range, parse_dimension, typed
from recommender.settings import checked
from recommender.visits import Visits

if TYPE_CHECKING:
    import optuna

Metric = Literal["ndcg_at_10", "precision_at_10"]
METRICS: tuple[str, ...] = get_args(Metric)
MAX_TRIALS = 1000


class TuneError(ValueError):
    """A bad tuning setting; `field` names it within the settings (`trials`, `space.factors`, ...)."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class TuneSettings:
    """How many trials, which metric to maximise, range overrides per parameter, and the seed of the search."""

    trials: int = 30
    metric: Metric = "ndcg_at_10"
    space: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or not 1 <= self.trials <= MAX_TRIALS:
            raise TuneError("trials", f"must be a whole number between 1 and {MAX_TRIALS}")
        if self.metric not in METRICS:
            raise TuneError("metric", f"must be one of {list(METRICS)}, not {self.metric!r}")
        if not isinstance(self.space, Mapping):
            raise TuneError("space", "must be an object of parameter name -> range")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise TuneError("seed", "must be a whole number between 0 and 2^32 - 1")

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> "TuneSettings":
        """Settings from plain values; unknown names are a TuneError naming them."""
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise TuneError(unknown[0], f"unknown setting; use {[f.name for f in fields(cls)]}")
        return cls(**raw)


@dataclass(frozen=True)
class Trial:
    """One fitted candidate: its parameters, its score on the tuning split and how long it took."""

    params: dict[str, Any]
    metric: float
    seconds: float


@dataclass(frozen=True)
class TuningResult:
    """Every finished trial in order, whether the search was told to stop before the last, and the trials
    that failed (parameters and why: a point of the space the model refuses, such as EASE's max_items
    below the catalogue), which the search steers away from."""

    trials: list[Trial]
    stopped: bool
    failures: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    @property
    def best(self) -> Trial | None:
        """The highest-scoring trial; the earliest of equals."""
        return max(self.trials, key=lambda t: t.metric, default=None)


def search_space(algorithm: str, fixed: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Dimension]:
    """The model's default space without the parameters fixed in `fixed`, with `overrides` parsed and checked.

    Both ends of every range (every choice) must be values the model accepts,
    so that no trial fails on a parameter the request could have been told about.
    """
    cls = ALGORITHMS[algorithm]
    types = get_type_hints(cls.params_type)
    space = {name: typed(dim, types[name] is int) for name, dim in cls.SEARCH_SPACE.items() if name not in fixed}
    for name, raw in overrides.items():
        where = f"space.{name}"
        if name not in cls.settings():
            raise TuneError(where, f"{algorithm} has no parameter {name!r}; it has {sorted(cls.settings())}")
        if name in fixed:
            raise TuneError(where, f"{name!r} is also fixed in params; send it in one place")
        try:
            space[name] = parse_dimension(raw, integer=types[name] is int)
        except ValueError as exc:
            raise TuneError(where, str(exc)) from None
    for name, dim in space.items():
        for value in dim.ends():
            try:
                checked(cls.params_type, {**fixed, name: value})  # as each trial's model will check it
            except (TypeError, ValueError) as exc:
                raise TuneError(f"space.{name}", f"{value!r} is out of bounds: {exc}") from None
    if not space:
        raise TuneError("space", f"{algorithm} has no parameter left to tune")
    return space


def _suggest(trial: optuna.trial.Trial, name: str, dim: Dimension) -> Any:
    if isinstance(dim, Choice):
        return trial.suggest_categorical(name, list(dim.options))
    assert isinstance(dim, Range)
    if isinstance(dim.low, int):
        return trial.suggest_int(name, dim.low, int(dim.high), log=dim.log)
    return trial.suggest_float(name, float(dim.low), float(dim.high), log=dim.log)


def tune(
    user_items: sp.csr_matrix,
    algorithm: str,
    fixed: Mapping[str, Any],
    space: Mapping[str, Dimension],
    settings: TuneSettings,
    test_fraction: float = 0.2,
    eval_users: int = 2000,
    on_trial: Callable[[Trial, int], None] | None = None,
    on_failed: Callable[[dict[str, Any], str, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    visits_of: Callable[[float, sp.csr_matrix], Visits | None] | None = None,
) -> TuningResult:
    """Run up to `settings.trials` trials; `on_trial(trial, run)` after each that finished (`run` counts
    the trials run so far, failed ones included), `on_failed(params, why, run)` after each the model
    refused, `should_stop()` before each; `visits_of` as `Recommender.visits_of`.

    Every trial is fitted and scored on one holdout split seeded by
    `settings.seed`, so that they differ only in their parameters.
    """
    # Imported here, not at the top: serving processes import this module for its settings and never search.
    import optuna

    split = holdout_split(user_items, test_fraction, settings.seed, max_users=eval_users)
    if len(split.users) == 0:  # every trial would score nothing, and the search choose at random
        raise CannotTrain(f"the tuning split held out no interaction to rank (test_fraction {test_fraction:g}); raise evaluation.test_fraction or eval_users")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=settings.seed))
    done: list[Trial] = []
    failed: list[tuple[dict[str, Any], str]] = []
    for _ in range(settings.trials):
        if should_stop is not None and should_stop():
            return TuningResult(done, stopped=True, failures=failed)
        candidate = study.ask()
        params = {**fixed, **{name: _suggest(candidate, name, dim) for name, dim in space.items()}}
        started = time.perf_counter()
        try:
            model = make_recommender(algorithm, params)
            model.should_stop = should_stop  # a long trial stops between its iterations too
            model.visits_of = visits_of
            model.fit(split.train)
        except ValueError as exc:  # one point of the space the model refuses; the others may do
            study.tell(candidate, state=optuna.trial.TrialState.FAIL)
            failed.append((params, str(exc)))
            if on_failed is not None:
                on_failed(params, str(exc), len(done) + len(failed))
            continue
        score = float(getattr(evaluate(model, split, max_users=eval_users, seed=settings.seed), settings.metric))
        study.tell(candidate, score)
        done.append(Trial(params, score, time.perf_counter() - started))
        if on_trial is not None:
            on_trial(done[-1], len(done) + len(failed))  # trials run so far, failed ones included
    return TuningResult(done, stopped=False, failures=failed)
