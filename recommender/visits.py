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
    """Which items each visit had (`items`, visits x items, 1 where it had the item) and whose it was (`users`, a row of the matrix each)."""

    items: sp.csr_matrix
    users: np.ndarray

    def __len__(self) -> int:
        return self.items.shape[0]

    def valued_from(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """Each visit's items with their owner's value in `user_items`, leaving out the cells it lacks.

        A model fitted on an evaluation split thus learns nothing from a visit's held-out items:
        they are absent from the split's training side, so they leave the visits too.
        """
        visits = self.items.tocoo()
        n_items = np.int64(user_items.shape[1])
        cells = user_items.tocsr()
        cells.sort_indices()  # row by row, columns ascending: the keys below come out sorted
        owner_keys = np.repeat(np.arange(cells.shape[0], dtype=np.int64), np.diff(cells.indptr)) * n_items + cells.indices
        keys = self.users[visits.row].astype(np.int64) * n_items + visits.col
        at = np.minimum(np.searchsorted(owner_keys, keys), max(len(owner_keys) - 1, 0))
        found = owner_keys[at] == keys if len(owner_keys) else np.zeros(len(keys), dtype=bool)
        return sp.csr_matrix((cells.data[at[found]], (visits.row[found], visits.col[found])), shape=self.items.shape)


@dataclass
class EventTimes:
    """The events behind a matrix, in its rows and columns, with their times: what visits are cut from."""

    rows: np.ndarray
    cols: np.ndarray
    ts: np.ndarray
    shape: tuple[int, int]
    _order: np.ndarray | None = field(default=None, repr=False)
    _cut: dict[float, Visits] = field(default_factory=dict, repr=False)

    def visits(self, gap_seconds: float) -> Visits:
        """The visits when a pause longer than `gap_seconds` starts a new one (the last few asked for are kept)."""
        found = self._cut.get(gap_seconds)
        if found is not None:
            return found
        if self._order is None:  # the costly part, shared by every gap a search tries
            self._order = np.lexsort((self.ts, self.rows))
        rows, cols, ts = self.rows[self._order], self.cols[self._order], self.ts[self._order]
        starts = np.ones(len(rows), dtype=bool)
        starts[1:] = (rows[1:] != rows[:-1]) | (np.diff(ts) > gap_seconds)
        visit = np.cumsum(starts) - 1
        items = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (visit, cols)), shape=(int(starts.sum()), self.shape[1]))
        items.sum_duplicates()
        items.data[:] = 1.0  # an item bought twice in one visit is one item of that visit
        if len(self._cut) >= 4:
            self._cut.clear()
        self._cut[gap_seconds] = Visits(items, rows[starts])
        return self._cut[gap_seconds]
