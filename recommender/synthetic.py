"""Synthetic behaviour with power-law item popularity, for demos, tests and benchmarks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.matrix import EVENT_TYPES as _TYPES

# A storefront's usual funnel: most events are views, few are purchases. An event type the registry
# gains is generated only once it has a share here.
_SHARES = {"view": 0.70, "click": 0.15, "add_to_cart": 0.10, "purchase": 0.05}
EVENT_TYPES = np.array([t for t in _TYPES if t in _SHARES])
TYPE_SHARES = np.array([_SHARES[t] for t in EVENT_TYPES])


@dataclass(frozen=True)
class SyntheticData:
    """Parallel arrays of events plus each item's category."""

    users: np.ndarray
    items: np.ndarray
    types: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray
    item_categories: np.ndarray


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Probabilities proportional to 1 / rank**exponent."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def generate(
    n_users: int,
    n_items: int,
    n_events: int,
    seed: int = 0,
    exponent: float = 1.0,
    n_categories: int = 8,
    affinity: float = 0.8,
    start: float = 1_767_225_600.0,
    span_days: float = 90.0,
) -> SyntheticData:
    """Users favour one category; items within it follow a power law, and so does user activity."""
    rng = np.random.default_rng(seed)
    item_rank = rng.permutation(n_items)  # popularity rank of each item
    categories = rng.integers(0, n_categories, size=n_items)
    popularity = zipf_weights(n_items, exponent)[item_rank]
    user_pref = rng.integers(0, n_categories, size=n_users)
    users = rng.choice(n_users, size=n_events, p=zipf_weights(n_users, 0.5)[rng.permutation(n_users)])
    items = rng.choice(n_items, size=n_events, p=popularity)
    # With probability `affinity` resample the item from the user's favourite category.
    by_cat = [np.flatnonzero(categories == c) for c in range(n_categories)]
    cat_p = [popularity[idx] / popularity[idx].sum() if len(idx) else None for idx in by_cat]
    loyal = rng.random(n_events) < affinity
    for c in range(n_categories):
        if cat_p[c] is None:
            continue
        rows = np.flatnonzero(loyal & (user_pref[users] == c))
        items[rows] = rng.choice(by_cat[c], size=len(rows), p=cat_p[c])
    types = EVENT_TYPES[rng.choice(len(EVENT_TYPES), size=n_events, p=TYPE_SHARES)]
    timestamps = np.sort(start + rng.random(n_events) * span_days * 86_400.0)
    values = np.where(types == "purchase", np.round(rng.lognormal(3.0, 0.6, n_events), 2), np.nan)
    return SyntheticData(users, items, types, timestamps, values, categories)
