"""The request schemas' defaults are the domain's, and name what its registries hold."""
from __future__ import annotations

from dataclasses import asdict

import pytest

from bandits.registry import POLICIES
from experiments.definitions import AnalysisSettings, BanditSettings
from experiments.stats.power import PLAN_DEFAULTS
from recommender.models import ALGORITHMS
from recommender.tuning import TuneSettings
from service.http.console.choices import labelled
from service.http.schemas.catalogue import TrainRequest, TuneRequest
from service.http.schemas.experiments import AnalysisIn, BanditIn
from service.http.schemas.results import PlanIn


def test_defaults_name_registered_entries():
    assert BanditIn().algorithm in POLICIES
    assert TrainRequest().algorithm in ALGORITHMS


def test_settings_schemas_default_as_the_domain_does():
    assert BanditIn().model_dump() == asdict(BanditSettings())
    assert AnalysisIn().model_dump() == asdict(AnalysisSettings())
    assert TuneRequest().model_dump() == asdict(TuneSettings())
    plan = PlanIn(metric_kind="binary", baseline=0.1, mde=0.01).model_dump()
    assert {k: plan[k] for k in PLAN_DEFAULTS} == PLAN_DEFAULTS


def test_console_labels_must_cover_the_options_exactly():
    assert labelled(("a", "b"), {"b": "B", "a": "A"}) == (("a", "A"), ("b", "B"))
    with pytest.raises(ValueError, match="do not match"):
        labelled(("a", "b"), {"a": "A"})
