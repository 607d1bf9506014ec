"""What the experiments use cases answer beyond the API's own objects."""
from __future__ import annotations

from experiments.definitions import BUILTIN_METRICS
from service.usecases import experiments
from tests.experiment_helpers import ab_definition, post_ok


def test_an_experiment_is_read_on_its_own_metrics_then_the_built_in_ones(client, auth, db):
    metrics = [{"key": "complaints", "kind": "continuous", "higher_is_better": False}, {"key": "conversion", "kind": "binary"}]
    post_ok(client, "/v1/experiments", ab_definition("read-on", metrics=metrics, primary_metric="conversion"), auth("editor"), status=201)
    exp, readable = experiments.get_with_metrics(db, "read-on")
    assert exp["key"] == "read-on"
    assert list(readable) == ["complaints", "conversion", *BUILTIN_METRICS]
    assert (readable["complaints"].kind, readable["complaints"].higher_is_better) == ("continuous", False)
    assert (readable["revenue"].kind, readable["revenue"].higher_is_better) == ("continuous", True)
