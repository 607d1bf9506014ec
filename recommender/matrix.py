"""Build the users x items confidence matrix from behaviour events."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class MatrixSettings:
    """How events turn into confidence: per-type weights, time decay and scaling."""

    weights: Mapping[str, float] = field(default_factory=lambda: {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0})
    half_life_days: float | None = None
    scaling: Literal["linear", "log"] = "log"
    alpha: float = 1.0
    epsilon: float = 8.0

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"weights: unknown event types {sorted(unknown)}; use {list(EVENT_TYPES)}")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("weights: an event weight cannot be negative")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive when set")
        if self.scaling not in ("linear", "log"):
            raise ValueError("scaling must be 'linear' or 'log'")
        if self.alpha <= 0:
            raise ValueError("alpha must be positive")
        if self.epsilon <= 0:
            raise ValueError("epsilon must be positive")

    def type_weights(self, types: Sequence[str]) -> np.ndarray:
        """The weight of each event type in `types`."""
        return np.fromiter((self.weights.get(t, 0.0) for t in types), dtype=np.float64, count=len(types))

    def confidence(self, strength: np.ndarray) -> np.ndarray:
        """Confidence from summed weighted strength (Hu, Koren and Volinsky 2008)."""
        if self.scaling == "log":
            return (1.0 + self.alpha * np.log1p(strength / self.epsilon)).astype(np.float32)
        return (1.0 + self.alpha * strength).astype(np.float32)

    def decay(self, ts: np.ndarray, now: float) -> np.ndarray:
        """Exponential time decay of each event's weight, 1 when decay is off."""
        if self.half_life_days is None:
            return np.ones(len(ts))
        age_days = np.maximum(now - ts, 0.0) / SECONDS_PER_DAY
        return np.exp(-math.log(2) * age_days / self.half_life_days)


@dataclass
class InteractionMatrix:
    """Confidence matrix with the ids behind its rows and columns."""

    user_ids: list[str]
    item_ids: list[str]
    confidence: sp.csr_matrix
    strength: sp.csr_matrix

    @property
    def shape(self) -> tuple[int, int]:
        """(users, items)."""
        return self.confidence.shape  # type: ignore[return-value]


class _Indexer:
    """Assigns dense indices to ids in order of first appearance."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def codes(self, ids: Iterable[str]) -> np.ndarray:
        index = self.index
        setdefault = index.setdefault
        return np.fromiter((setdefault(x, len(index)) for x in ids), dtype=np.int64)

    def ids(self) -> list[str]:
        return list(self.index)


class MatrixBuilder:
    """Accumulates event chunks so that millions of events never sit in Python lists at once."""

    def __init__(self, settings: MatrixSettings, now: float) -> None:
        self.settings = settings
        self.now = now
        self._users = _Indexer()
        self._items = _Indexer()
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self.events = 0

    def add(self, users: Sequence[str], items: Sequence[str], types: Sequence[str], ts: Sequence[float]) -> None:
        """Add one chunk of events (parallel sequences)."""
        weights = self.settings.type_weights(types) * self.settings.decay(np.asarray(ts, dtype=np.float64), self.now)
        keep = weights > 0
        self._rows.append(self._users.codes(users)[keep])
        self._cols.append(self._items.codes(items)[keep])
        self._vals.append(weights[keep])
        self.events += len(users)

    def build(self) -> InteractionMatrix:
        """The matrix of everything added; duplicate (user, item) pairs sum their strength."""
        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(self._cols) if self._cols else np.zeros(0, dtype=np.int64)
        vals = np.concatenate(self._vals) if self._vals else np.zeros(0)
        shape = (len(self._users.index), len(self._items.index))
        strength = sp.csr_matrix((vals, (rows, cols)), shape=shape, dtype=np.float64)
        strength.sum_duplicates()
        confidence = strength.copy().astype(np.float32)
        confidence.data = self.settings.confidence(strength.data)
        return InteractionMatrix(self._users.ids(), self._items.ids(), confidence.tocsr(), strength.tocsr())


def row_for_events(
    settings: MatrixSettings, item_index: Mapping[str, int], n_items: int, events: Sequence[tuple[str, str, float]], now: float
) -> sp.csr_matrix:
    """A single user's confidence row over a model's items, from (item_id, type, ts) events."""
    known = [(item_index[i], t, ts) for i, t, ts in events if i in item_index]
    if not known:
        return sp.csr_matrix((1, n_items), dtype=np.float32)
    cols = np.array([k[0] for k in known], dtype=np.int64)
    weights = settings.type_weights([k[1] for k in known]) * settings.decay(np.array([k[2] for k in known]), now)
    strength = sp.csr_matrix((weights, (np.zeros(len(cols), dtype=np.int64), cols)), shape=(1, n_items))
    strength.sum_duplicates()
    strength.eliminate_zeros()
    row = strength.astype(np.float32)
    row.data = settings.confidence(strength.data)
    return row.tocsr()
