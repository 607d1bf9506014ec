"""Build the users x items confidence matrix from behaviour events."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from recommender.visits import EventTimes, Visits

# The event types, and how strongly each signals interest by default; the one list of both.
DEFAULT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
EVENT_TYPES = tuple(DEFAULT_WEIGHTS)
SECONDS_PER_DAY = 86_400.0


# Every setting stays within the bound the service puts on numbers, so confidences stay finite.
MAX_SETTING = 1e12
# An hour: at a shorter half-life an event a day old weighs under 2^-24 and a training set is the last
# minutes' events alone (5e-324 days had trained a "ready" model on one user that served nothing).
MIN_HALF_LIFE_DAYS = 1 / 24
# An event decayed below this weighs less than float32, which holds the confidences, can tell from nothing
# beside a fresh one (24 half-lives): it is left out. Kept, an event some 150 half-lives old had a confidence
# of exactly 0, and a user with only such events was "personalized" from nothing (an empty list, or the
# catalogue in its order).
MIN_DECAY = 2.0**-24


@dataclass(frozen=True)
class MatrixSettings:
    """How events turn into confidence: per-type weights, time decay and scaling."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
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

    def check_bounds(self) -> None:
        """Refuse settings beyond MAX_SETTING (and a half-life under an hour), for a new request only: a version trained before the bound
        was set keeps its settings in its artifact, and must still load."""
        numbers = {**{f"weights.{k}": w for k, w in self.weights.items()}, "half_life_days": self.half_life_days, "alpha": self.alpha, "epsilon": self.epsilon}
        for name, value in numbers.items():
            if value is not None and not value <= MAX_SETTING:
                raise ValueError(f"{name} must be at most {MAX_SETTING:g}")
        if not self.epsilon >= 1 / MAX_SETTING:  # strength / epsilon would overflow to an infinite confidence
            raise ValueError(f"epsilon must be at least {1 / MAX_SETTING:g}, got {self.epsilon:g}")
        if self.half_life_days is not None and self.half_life_days < MIN_HALF_LIFE_DAYS:
            raise ValueError(f"half_life_days must be at least {MIN_HALF_LIFE_DAYS:.4g} (an hour), got {self.half_life_days:g}")

    def type_weights(self, types: Sequence[str]) -> np.ndarray:
        """The weight of each event type in `types`."""
        return np.fromiter((self.weights.get(t, 0.0) for t in types), dtype=np.float64, count=len(types))

    def confidence(self, strength: np.ndarray, freshness: np.ndarray | None = None) -> np.ndarray:
        """Confidence from summed weighted strength (Hu, Koren and Volinsky 2008): a base for having seen the
        cell at all, plus its scaled strength.

        With decay, the base is the cell's `freshness` (the mean of its events' decay, weighted by their
        weights) instead of 1: kept at 1, a view a year old under a one-day half-life still weighed 0.89 of a
        fresh one's 1.12, then vanished at once when its weight underflowed, some 1,074 half-lives on.
        """
        base = 1.0 if freshness is None else freshness
        if self.scaling == "log":
            return (base + self.alpha * np.log1p(strength / self.epsilon)).astype(np.float32)
        return (base + self.alpha * strength).astype(np.float32)

    def cells(self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, decayed: np.ndarray, shape: tuple[int, int]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """The strength and confidence matrices of events with positive `decayed` weights (their type's
        `weights` times their decay), duplicate cells summed."""
        strength = sp.csr_matrix((decayed, (rows, cols)), shape=shape, dtype=np.float64)
        strength.sum_duplicates()
        confidence = strength.astype(np.float32)
        if self.half_life_days is None:
            confidence.data = self.confidence(strength.data)
        else:  # summed alike, over the same cells, in the same canonical order
            seen = sp.csr_matrix((weights, (rows, cols)), shape=shape, dtype=np.float64)
            seen.sum_duplicates()
            confidence.data = self.confidence(strength.data, strength.data / seen.data)
        return strength, confidence

    def decay(self, ts: np.ndarray, now: float) -> np.ndarray:
        """Exponential time decay of each event's weight, 1 when decay is off; below MIN_DECAY an event is left out."""
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
    # The events behind the cells, with their times, when the matrix was built from events.
    events: EventTimes | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(users, items)."""
        return self.confidence.shape  # type: ignore[return-value]

    def visits(self, gap_seconds: float, within: sp.csr_matrix) -> Visits | None:
        """Which of `within`'s cells each user had in each visit (a pause over `gap_seconds` starts a new one); None without the events' times."""
        return None if self.events is None else self.events.visits(gap_seconds, within)


@dataclass(frozen=True)
class CodedEvents:
    """Events as parallel arrays, users and items as integer codes.

    `user_ids[code]` names a user code (likewise items); codes need not be
    dense, since database sequences leave gaps. `types` index EVENT_TYPES.
    """

    users: np.ndarray
    items: np.ndarray
    types: np.ndarray
    ts: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_ids(cls, users: Sequence[str], items: Sequence[str], types: Sequence[str], ts: Sequence[float]) -> "CodedEvents":
        """Code plain parallel sequences of ids, in order of first appearance."""
        user_codes, user_ids = _codes(users)
        item_codes, item_ids = _codes(items)
        type_codes = np.fromiter((EVENT_TYPES.index(t) for t in types), dtype=np.uint8, count=len(types))
        return cls(user_codes, item_codes, type_codes, np.asarray(ts, dtype=np.float64), user_ids, item_ids)


def _codes(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(x, len(index)) for x in ids), dtype=np.int64, count=len(ids))
    return codes, np.array(list(index), dtype=object)


def _compact(codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Dense row (or column) numbers for the codes present, in code order, and their ids."""
    present = np.zeros(len(ids), dtype=bool)
    present[codes] = True
    position = np.cumsum(present) - 1
    return position[codes], ids[present].tolist()


def build_matrix(events: CodedEvents, settings: MatrixSettings, now: float) -> InteractionMatrix:
    """The confidence matrix of the events; duplicate (user, item) pairs sum their strength.

    Only users and items with a positive-weight event not decayed below MIN_DECAY get a row or
    column, so someone who only did what carries no weight, or did it long ago, stays unknown to
    the model (and is folded in) rather than known with nothing learned.
    """
    weights = settings.type_weights(EVENT_TYPES)[events.types]
    decay = settings.decay(events.ts, now)
    decayed = weights * decay
    keep = (decayed > 0) & (decay >= MIN_DECAY)
    rows, user_ids = _compact(events.users[keep], events.user_ids)
    cols, item_ids = _compact(events.items[keep], events.item_ids)
    strength, confidence = settings.cells(rows, cols, weights[keep], decayed[keep], (len(user_ids), len(item_ids)))
    index = np.int32 if max(len(user_ids), len(item_ids)) < 2**31 else np.int64  # held while the model trains
    events_kept = EventTimes(rows.astype(index), cols.astype(index), events.ts[keep], strength.shape)
    return InteractionMatrix(user_ids, item_ids, confidence, strength, events_kept)


def row_for_events(
    settings: MatrixSettings, item_index: Mapping[str, int], n_items: int, events: Sequence[tuple[str, str, float]], now: float
) -> sp.csr_matrix:
    """A single user's confidence row over a model's items, from (item_id, type, ts) events."""
    known = [(item_index[i], t, ts) for i, t, ts in events if i in item_index]
    if not known:
        return sp.csr_matrix((1, n_items), dtype=np.float32)
    cols = np.array([k[0] for k in known], dtype=np.int64)
    weights = settings.type_weights([k[1] for k in known])
    decay = settings.decay(np.array([k[2] for k in known], dtype=np.float64), now)
    decayed = weights * decay
    keep = (decayed > 0) & (decay >= MIN_DECAY)
    _, row = settings.cells(np.zeros(int(keep.sum()), dtype=np.int64), cols[keep], weights[keep], decayed[keep], (1, n_items))
    return row
