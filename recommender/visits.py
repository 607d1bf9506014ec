"""Visits: the items one shopper had within one stretch of activity, from the events' times.

Two films rated in one evening, or two products looked at in one visit to a shop, are more
closely related than two items the same person had years apart. An item-item model can weigh
such pairs more (EASE's `session_weight`). A visit ends at the first pause longer than a gap
(30 minutes by default, the usual session timeout of web analytics).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Visits:
    """Which items each visit had, with their owner's value (`items`, visits x items) and whose it was (`users`, a row of the matrix each)."""

    items: sp.csr_matrix
    users: np.ndarray

    def __len__(self) -> int:
        return self.items.shape[0]


def _present(rows: np.ndarray, cols: np.ndarray, cells: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Where each (row, col) falls among the stored cells of `cells` (canonical CSR), and whether it is one of them."""
    n_cols = np.int64(cells.shape[1])
    stored = np.repeat(np.arange(cells.shape[0], dtype=np.int64), np.diff(cells.indptr)) * n_cols + cells.indices
    keys = rows.astype(np.int64) * n_cols + cols
    if len(stored) == 0:
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(stored, keys), len(stored) - 1)
    return at, stored[at] == keys


@dataclass
class EventTimes:
    """The events behind a matrix, in its rows and columns, with their times: what visits are cut from."""

    rows: np.ndarray
    cols: np.ndarray
    ts: np.ndarray
    shape: tuple[int, int]
    _order: np.ndarray | None = field(default=None, repr=False)

    def visits(self, gap_seconds: float, within: sp.csr_matrix) -> Visits:
        """The visits of the events whose cell `within` holds, a pause longer than `gap_seconds` starting a new one,
        each item valued as `within` values its owner's cell.

        An evaluation split's training side as `within` keeps its held-out cells out entirely: neither
        their items nor their times (which would otherwise decide where its visits are cut) reach a model.
        """
        if self._order is None:  # the costly part, shared by every fit on this matrix
            self._order = np.lexsort((self.ts, self.rows))
        cells = within.tocsr()
        cells.sort_indices()  # row by row, columns ascending: the keys `_present` searches come out sorted
        rows, cols, ts = self.rows[self._order], self.cols[self._order], self.ts[self._order]
        at, present = _present(rows, cols, cells)
        rows, cols, ts, at = rows[present], cols[present], ts[present], at[present]
        starts = np.ones(len(rows), dtype=bool)
        starts[1:] = (rows[1:] != rows[:-1]) | (np.diff(ts) > gap_seconds)
        visit = np.cumsum(starts) - 1
        items = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (visit, cols)), shape=(int(starts.sum()), self.shape[1]))
        items.sum_duplicates()
        # An item had twice in one visit is one item of it, at its owner's value.
        owner = np.repeat(np.arange(items.shape[0]), np.diff(items.indptr))
        users = rows[starts]
        value_at, _ = _present(users[owner], items.indices, cells)
        items.data = cells.data[value_at].astype(np.float32)
        return Visits(items, users)
