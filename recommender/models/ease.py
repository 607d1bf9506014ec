"""EASE: Steck's embarrassingly shallow autoencoder, an item-item matrix in closed form (Steck 2019, 2020),
with pairs of items one shopper had in one visit weighed more (`session_weight`, see recommender.visits)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
import scipy.sparse as sp

from recommender.base import CannotTrain, Recommender
from recommender.search_space import Dimension, Range

# B takes 4 * max_items^2 bytes: 0.9 GB at this bound, within PostgreSQL's 1 GB limit on one stored
# value (the artifact goes into the database), and twice that while it is inverted.
MAX_ITEMS_CEILING = 15_000
# Users whose rows are multiplied into the Gram matrix at once; bounds the sparse product's size.
GRAM_NNZ_PER_BLOCK = 2_000_000
# At 0.99 an item's penalty is already 99 times its own Gram diagonal; 1 would be infinite.
MAX_DROPOUT = 0.99
# Rows of B read at once when finding the items it links to nothing.
LINK_ROWS = 1_024
# A visit's pairs may count at most this many times a shopper's: far beyond, B would learn visits alone.
MAX_SESSION_WEIGHT = 1_000.0
# A gap of a year and more makes each shopper's history one visit; one of under a second, each event its own.
SESSION_GAP_MINUTES = (1 / 60, 525_600.0)


@dataclass(frozen=True)
class EASEParams:
    """The ridge penalty, its dropout emphasis, and how many of the most interacted items the dense matrix may span."""

    l2: float = 500.0
    # Steck's emphasized denoising (EDLAE, 2020): each item's penalty grows with its own
    # popularity, l2 + dropout / (1 - dropout) * (X^T X)_ii, as if that share of its cells
    # were dropped from the input; 0 is plain EASE.
    dropout: float = 0.0
    # Each pair of items one shopper had in one visit counts this many times more in the Gram matrix:
    # X^T X + session_weight * V^T V, V one row per visit. 0 is plain EASE; 0.5 was chosen on holdouts
    # of MovieLens' training ratings (docs/recommendations.md). Needs the events' times, so a fit on a
    # bare matrix is plain EASE.
    session_weight: float = 0.5
    # A pause longer than this ends a visit (30 minutes: the usual session timeout of web analytics).
    session_gap_minutes: float = 30.0
    max_items: int = 10_000
    min_coverage: float = 0.5
    refit_iterations: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.l2 <= 1e9:
            raise ValueError("l2 must be positive and at most 1e9")
        if not 0 <= self.dropout <= MAX_DROPOUT:
            raise ValueError(f"dropout must be between 0 and {MAX_DROPOUT:g}: the penalty grows as dropout / (1 - dropout)")
        if not 0 <= self.session_weight <= MAX_SESSION_WEIGHT:
            raise ValueError(f"session_weight must be between 0 and {MAX_SESSION_WEIGHT:g}")
        low, high = SESSION_GAP_MINUTES
        if not low <= self.session_gap_minutes <= high:
            raise ValueError(f"session_gap_minutes must be between {low:.4g} (a second) and {high:g} (a year)")
        if not 1 <= self.max_items <= MAX_ITEMS_CEILING:
            raise ValueError(f"max_items must be between 1 and {MAX_ITEMS_CEILING}: the item-item matrix takes 4 * max_items^2 bytes")
        if not 0 <= self.min_coverage <= 1:
            raise ValueError("min_coverage must be between 0 and 1")


def gram(user_items: sp.csr_matrix, out: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
    """X^T X as a dense float32 matrix (`scale` times it added to `out`), summed over blocks of rows so that no sparse product grows unbounded."""
    n = user_items.shape[1]
    if out is None:
        out = np.zeros((n, n), dtype=np.float32)
    nnz_before = user_items.indptr
    start = 0
    while start < user_items.shape[0]:
        # Enough users for the block to hold about GRAM_NNZ_PER_BLOCK interactions, and at least one.
        stop = int(np.searchsorted(nnz_before, nnz_before[start] + GRAM_NNZ_PER_BLOCK, side="right"))
        stop = min(max(stop - 1, start + 1), user_items.shape[0])
        block = user_items[start:stop]
        product = (block.T @ block).tocoo()
        # A product in canonical form has no repeated cells, so plain fancy-index addition is exact.
        out[product.row, product.col] += product.data if scale == 1.0 else np.float32(scale) * product.data
        start = stop
    return out


def spd_inverse(g: np.ndarray, leaf: int = 1024) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix, by 2 x 2 blocks and their Schur complements.

    scipy's Cholesky inverse holds the GIL throughout (a minute at 15,000 items), which starves
    the training run's heartbeat thread until readers declare the run dead. Matrix products
    and numpy's own inverse release it; this costs about 1.3 times the arithmetic of potri.
    """
    n = g.shape[0]
    if n <= leaf:
        return _symmetrised(np.linalg.inv(g))
    h = n // 2
    b = g[:h, h:]
    a_inv = spd_inverse(g[:h, :h], leaf)
    a_inv_b = a_inv @ b
    s_inv = spd_inverse(g[h:, h:] - b.T @ a_inv_b, leaf)  # the Schur complement of a SPD matrix is SPD
    x = a_inv_b @ s_inv
    out = np.empty_like(g)
    out[:h, :h] = _symmetrised(a_inv + x @ a_inv_b.T)
    out[:h, h:] = -x
    out[h:, :h] = -x.T
    out[h:, h:] = s_inv
    return out


def _symmetrised(m: np.ndarray) -> np.ndarray:
    """(M + M^T) / 2 in place: float32 rounding leaves a computed inverse asymmetric by an amount
    that depends on the CPU's kernels, and an exactly symmetric one is both closer and the same everywhere."""
    np.add(m, m.T, out=m)  # numpy buffers the overlapping operand
    m *= 0.5
    return m


def closed_form(g: np.ndarray, l2: float, dropout: float = 0.0) -> np.ndarray:
    """B = I - P diag(1/diag(P)) with P = (G + L)^-1, L = l2 I + dropout / (1 - dropout) diag(G), and a zero diagonal; `g` is consumed."""
    # G_ii + dropout / (1 - dropout) G_ii is G_ii / (1 - dropout): one division, no cancellation.
    g[np.diag_indices_from(g)] = np.diag(g) / np.float32(1.0 - dropout) + np.float32(l2)
    p = spd_inverse(g)
    del g
    p /= -np.diag(p)[np.newaxis, :]
    p[np.diag_indices_from(p)] = 0.0
    return p.astype(np.float32, copy=False)


class EASE(Recommender):
    """Scores are a user's confidence row times B, so anyone with events is scored alike, new or known."""

    # B costs 4 * items^2 bytes and O(items^3) time, hence `max_items`: only the most
    # interacted items enter B and the others are never recommended. If those kept hold
    # less than `min_coverage` of the interactions the fit is refused, rather than
    # quietly serving a sliver of the catalogue.

    name = "ease"
    params_type = EASEParams
    ZERO_IS_UNLINKED = True
    REFIT_SHARE = 0.01
    # l2 alone: with dropout in the default space too, 15-trial searches on MovieLens fitted their
    # holdout's noise and served worse than l2 alone (+8.7 % and +5.8 % over default ALS against +9.7 %).
    # A request still searches dropout by naming it in its space.
    SEARCH_SPACE: ClassVar[Mapping[str, Dimension]] = {"l2": Range(1.0, 10_000.0, log=True)}
    _weights: np.ndarray  # B over the kept items
    _kept: np.ndarray  # each kept item's column in the full matrix
    _popularity: np.ndarray  # distinct users of each kept item: the answer for a row with none of them
    _n_items: int
    _report: dict[str, Any]

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, warm_start: bool = False) -> None:
        """Solve for B from scratch (there is nothing to continue: the solution is exact)."""
        p = self.params
        n_items = user_items.shape[1]
        counts = np.bincount(user_items.indices, minlength=n_items)
        kept = np.arange(n_items)
        if n_items > p.max_items:
            kept = np.sort(np.argsort(-counts, kind="stable")[: p.max_items])
            coverage = counts[kept].sum() / max(counts.sum(), 1)
            if coverage < p.min_coverage:
                raise CannotTrain(
                    f"ease: the {p.max_items:,} most interacted of {n_items:,} items hold only {coverage:.0%} of the interactions "
                    f"(min_coverage {p.min_coverage:g}); raise max_items (B takes 4 * max_items^2 bytes) or lower min_coverage"
                )
        x = user_items[:, kept].tocsr() if len(kept) < n_items else user_items.tocsr()
        # Confidences near the settings' 1e12 bound overflow float32's Gram matrix: its inverse is then
        # singular or NaN, and NaN weights would score every item NaN and answer no items at all. A
        # float64 sum of finite float32 values cannot overflow, so it is non-finite exactly when some weight is.
        unsolvable = "ease: no finite solution, since the confidence values overflow single precision; lower the event weights or raise l2"
        g = gram(x.astype(np.float32))
        visits_used = self._add_visits(g, user_items, kept)
        try:
            self._weights = closed_form(g, p.l2, p.dropout)
        except np.linalg.LinAlgError:
            raise CannotTrain(unsolvable) from None
        if not np.isfinite(self._weights.sum(dtype=np.float64)):
            raise CannotTrain(unsolvable)
        self._kept = kept
        self._popularity = counts[kept].astype(np.float32)
        self._n_items = n_items
        self._report = {
            "items_used": int(len(kept)),
            "items_dropped": int(n_items - len(kept)),
            "interactions_dropped": int(user_items.nnz - x.nnz),
            "visits_used": visits_used,
        }

    def _add_visits(self, g: np.ndarray, user_items: sp.csr_matrix, kept: np.ndarray) -> int:
        """Add session_weight * V^T V to the Gram matrix `g`, as if each visit were one more shopper; how many visits (0 without the events' times)."""
        p = self.params
        visits = self.visits_of(p.session_gap_minutes * 60.0, user_items) if p.session_weight > 0 and self.visits_of is not None else None
        if visits is None:
            return 0
        rows = visits.items
        if len(kept) < rows.shape[1]:
            rows = rows[:, kept]
        gram(rows.astype(np.float32), out=g, scale=p.session_weight)
        return int(rows.shape[0])

    def absorb(self, user_items: sp.csr_matrix, users: np.ndarray, held_out_share: float) -> None:
        """Keep B when what was held out is too little to move it (users are scored from their full rows anyway)."""
        if held_out_share > self.REFIT_SHARE:
            self.fit(user_items)
            return
        kept_nnz = user_items[:, self._kept].nnz if len(self._kept) < self._n_items else user_items.nnz
        self._report["interactions_dropped"] = int(user_items.nnz - kept_nnz)

    def fit_report(self) -> dict[str, Any]:
        """Which items B spans: `items_used`, `items_dropped` and the interactions lost with them."""
        return dict(self._report)

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        """x B over the kept items; -inf for the others, which B does not know."""
        x = rows[:, self._kept] if len(self._kept) < self._n_items else rows
        kept_scores = np.asarray(x @ self._weights, dtype=np.float32)
        # Someone whose items all fell outside B has all-zero scores; popularity orders them instead.
        empty = np.diff(x.tocsr().indptr) == 0
        kept_scores[empty] = self._popularity
        if len(self._kept) == self._n_items:
            return kept_scores
        out = np.full((rows.shape[0], self._n_items), -np.inf, dtype=np.float32)
        out[:, self._kept] = kept_scores
        return out

    def score_users(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Scores of known users from their training rows."""
        return self._scores(user_items[users])

    def score_row(self, row: sp.csr_matrix) -> np.ndarray:
        """Scores from a row of interactions: the same computation as for known users."""
        return self._scores(sp.csr_matrix(row, dtype=np.float32))[0]

    def similar(self, item: int) -> np.ndarray:
        """What B predicts for someone who has only this item."""
        return self.score_row(sp.csr_matrix(([1.0], ([0], [item])), shape=(1, self._n_items), dtype=np.float32))

    def placed_items(self) -> np.ndarray:
        """The items B covers and links to another: the others (beyond max_items, or with a row of zeros, as an
        item only one shopper touched, alone, has) are never scored from."""
        linked = np.zeros(len(self._kept), dtype=bool)
        for start in range(0, len(self._kept), LINK_ROWS):  # a block at a time: B may take most of a gigabyte
            linked[start : start + LINK_ROWS] = (self._weights[start : start + LINK_ROWS] != 0).any(axis=1)
        mask = np.zeros(self._n_items, dtype=bool)
        mask[self._kept[linked]] = True
        return mask

    def to_arrays(self) -> dict[str, np.ndarray]:
        """B, the kept items and their popularity."""
        return {"weights": self._weights, "kept": self._kept, "popularity": self._popularity, "n_items": np.array([self._n_items])}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore B and the kept items."""
        self._weights = np.ascontiguousarray(arrays["weights"], dtype=np.float32)
        self._kept = np.asarray(arrays["kept"], dtype=np.int64)
        self._popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        self._n_items = int(arrays["n_items"][0])
        self._report = {}

    @property
    def needs_training_matrix(self) -> bool:
        """Everyone, known or new, is scored from their interaction row."""
        return True
