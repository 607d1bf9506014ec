"""Train a model from an interaction matrix: evaluate on a sampled holdout, then catch up with what was held out."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from recommender.base import CannotTrain, Recommender
from recommender.evaluation import evaluate, holdout_split
from recommender.matrix import InteractionMatrix
from recommender.models import make_recommender
from recommender.models.popularity import Popularity, item_popularity

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingSettings:
    """How a model is evaluated before it is fitted to all the data."""

    evaluate: bool = True
    test_fraction: float = 0.2
    eval_users: int = 2000
    seed: int = 42

    def __post_init__(self) -> None:
        # More than half held out leaves a model fitted on the smaller part, which the catch-up on
        # everything cannot be trusted to recover (ALS shrinks towards zero, which then stays).
        if not 0 < self.test_fraction <= 0.5:
            raise ValueError("test_fraction must be above 0 and at most 0.5")
        if self.eval_users < 1:
            raise ValueError("eval_users must be at least 1")
        if not 0 <= self.seed < 2**32:
            raise ValueError("seed must be between 0 and 2**32 - 1")


@dataclass
class TrainedModel:
    """A fitted model, its evaluation and the timing of each stage."""

    model: Recommender
    matrix: InteractionMatrix
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def popularity(self):  # noqa: ANN201 - numpy array
        """Distinct users per item over all data: the cold-start list."""
        return item_popularity(self.matrix.confidence)


def train(
    matrix: InteractionMatrix,
    algorithm: str,
    params: Mapping[str, Any] | None = None,
    settings: TrainingSettings = TrainingSettings(),
    progress: Progress | None = None,
    show_progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> TrainedModel:
    """Evaluate on a seeded holdout split (with the popularity baseline), then fit on everything;
    `should_stop` is asked between a fit's iterations (FitStopped when it says so)."""
    say = progress or (lambda _msg: None)
    model = make_recommender(algorithm, params)
    model.should_stop = should_stop
    model.visits_of = matrix.visits
    result = TrainedModel(model=model, matrix=matrix)
    if matrix.confidence.nnz == 0:
        raise CannotTrain("there are no events with a positive weight to train on")
    if settings.evaluate:
        start = time.perf_counter()
        split = holdout_split(matrix.confidence, settings.test_fraction, settings.seed, max_users=settings.eval_users)
        say(f"fitting {algorithm} on the {1 - settings.test_fraction:.0%} training split")
        model.fit(split.train, show_progress=show_progress)
        result.timings["fit_split_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        say("evaluating on the holdout split")
        ours = evaluate(model, split, max_users=settings.eval_users, seed=settings.seed)
        baseline = Popularity()
        baseline.fit(split.train)
        base = evaluate(baseline, split, max_users=settings.eval_users, seed=settings.seed)
        result.metrics = {
            **asdict(ours),
            "popularity_precision_at_10": base.precision_at_10,
            "popularity_ndcg_at_10": base.ndcg_at_10,
            "popularity_recall_at_10": base.recall_at_10,
            "test_fraction": settings.test_fraction,
            "seed": settings.seed,
        }
        result.timings["evaluate_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        say(f"bringing the {len(split.users):,} evaluated users up to all {matrix.confidence.nnz:,} interactions")
        model.absorb(matrix.confidence, split.users, split.held_out_share)
        result.timings["absorb_seconds"] = time.perf_counter() - start
    else:
        start = time.perf_counter()
        say(f"fitting {algorithm} on all {matrix.confidence.nnz} interactions")
        model.fit(matrix.confidence, show_progress=show_progress)
        result.timings["fit_seconds"] = time.perf_counter() - start
    log.info("model trained", extra={"algorithm": algorithm, "metrics": result.metrics, "timings": result.timings})
    return result
