"""The options the console's selects offer: the domain's own values, each with the words a reader sees there.

Templates reach these as `choices.<NAME>`. The labels are keyed by the domain's values, and a label set that
does not cover them exactly fails at import, so an option added to the domain cannot go missing from a form.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from bandits.registry import POLICIES as _POLICIES
from experiments.definitions import METRIC_KINDS as _METRIC_KINDS
from experiments.stats.corrections import CORRECTIONS as _CORRECTIONS
from experiments.stats.power import MDE_TYPES as _MDE_TYPES, PLAN_CORRECTIONS as _PLAN_CORRECTIONS
from recommender.tuning import METRICS as _TUNING_METRICS


def labelled(values: Sequence[str], labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(value, label) pairs in the domain's order; a ValueError when the labels name other values."""
    if set(labels) != set(values):
        raise ValueError(f"labels for {sorted(labels)} do not match the options {list(values)}")
    return tuple((v, labels[v]) for v in values)


METRIC_KINDS = labelled(_METRIC_KINDS, {"binary": "binary (converted or not)", "continuous": "continuous (an amount)"})
CORRECTIONS = labelled(_CORRECTIONS, {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "none"})
# The planner's words: a PM sizing a test thinks of a rate or a mean, and Holm is sized at its worst case.
PLAN_METRIC_KINDS = labelled(_METRIC_KINDS, {"binary": "a rate (converted or not)", "continuous": "a mean (revenue, points, ...)"})
PLAN_CORRECTIONS = labelled(_PLAN_CORRECTIONS, {"holm": "Holm (planned as Bonferroni, its worst case)", "bonferroni": "Bonferroni", "none": "none"})
MDE_TYPES = labelled(_MDE_TYPES, {"absolute": "absolute (in the metric's own units)", "relative": "relative (a share of the baseline)"})
POLICIES = labelled(tuple(_POLICIES), {"thompson": "Thompson sampling", "ucb1": "UCB1", "epsilon_greedy": "epsilon-greedy",
                                       "uniform": "uniform (equal shares, learns nothing)"})

TUNING_METRICS = labelled(_TUNING_METRICS, {"ndcg_at_10": "NDCG@10", "precision_at_10": "precision@10"})


def said(options: Sequence[tuple[str, str]], value: str) -> str:
    """The words an option's value reads as, in the page's prose as in its select; the value itself if it is none of them."""
    return dict(options).get(value, value)
