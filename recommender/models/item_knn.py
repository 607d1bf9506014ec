"""Item-item nearest neighbours (implicit's cosine or BM25-weighted similarity)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar, Literal, Mapping

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, ItemItemRecommender, bm25_weight
from implicit.utils import ParameterWarning

from recommender.base import CannotTrain, Recommender
from recommender.search_space import Choice, Dimension, Range

# implicit's BM25 and cosine weighting hand its own fit a COO matrix and then warn that it converts
# it to CSR: a cost of theirs, on every training run, that nobody reading the logs can act on.
warnings.filterwarnings("ignore", message="Method expects CSR input", category=ParameterWarning)


@dataclass(frozen=True)
class ItemKNNParams:
    """Neighbourhood size and similarity."""

    neighbours: int = 100
    similarity: Literal["cosine", "bm25"] = "bm25"
    refit_iterations: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.neighbours <= 10_000:
            raise ValueError("neighbours must be between 1 and 10000")
        if self.similarity not in ("cosine", "bm25"):
            raise ValueError("similarity must be 'cosine' or 'bm25'")


class ItemKNN(Recommender):
    """Scores are a user's interactions times the item-item similarity matrix."""

    name = "item_knn"
    params_type = ItemKNNParams
    ZERO_IS_UNLINKED = True
    SEARCH_SPACE: ClassVar[Mapping[str, Dimension]] = {"neighbours": Range(10, 1000, log=True), "similarity": Choice(("bm25", "cosine"))}
    _similarity: sp.csr_matrix

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, warm_start: bool = False) -> None:
        """Compute the top-K similarity of every item (a refit simply recomputes it)."""
        # implicit counts an item among its own top K, and the diagonal goes below: one more, so that
        # `neighbours` counts other items (with K = neighbours, 1 had linked nothing).
        if self.params.similarity == "bm25":
            model: ItemItemRecommender = ItemItemRecommender(K=self.params.neighbours + 1)
            model.fit(_bm25_weighted(user_items), show_progress=show_progress)
        else:
            model = CosineRecommender(K=self.params.neighbours + 1)
            model.fit(user_items, show_progress=show_progress)
        similarity = model.similarity.tocsr().astype(np.float32)
        # Confidences whose squares overflow single precision leave cosine's norms infinite: every
        # similarity comes out 0 (or NaN), and the model would answer nothing but ties.
        if similarity.nnz and not (np.isfinite(similarity.data).all() and similarity.data.any()):
            if self.params.similarity == "bm25" and np.isfinite(similarity.data).all():
                # BM25 weighs a user by ln(items / (1 + the user's items)): nothing, when each has all but one item.
                raise CannotTrain(
                    f"item_knn: every BM25 similarity is 0, since every user has {user_items.shape[1] - 1} of the {user_items.shape[1]} items; "
                    "train on a bigger catalogue or use similarity 'cosine'"
                )
            raise CannotTrain("item_knn: no finite similarity, since the confidence values overflow single precision; lower the event weights")
        self._similarity = _at_most(_without_diagonal(similarity), self.params.neighbours)
        if not self._similarity.nnz:
            raise CannotTrain("item_knn: no item shares a user with another, so nothing links any two items; train on more events")

    def placed_items(self) -> np.ndarray:
        """Items linked to at least one other: an item alone in its rows (one shopper's only view, say) tells nothing."""
        return np.diff(self._similarity.indptr) > 0

    def score_users(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Scores of known users from their training rows."""
        return np.asarray((user_items[users] @ self._similarity).todense())

    def score_row(self, row: sp.csr_matrix) -> np.ndarray:
        """Scores from a row of interactions: the same computation as for known users."""
        return np.asarray((row @ self._similarity).todense()).ravel()

    def similar(self, item: int) -> np.ndarray:
        """The item's row of the similarity matrix."""
        return np.asarray(self._similarity[item].todense()).ravel()

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The sparse similarity matrix's parts."""
        m = self._similarity
        return {"sim_data": m.data, "sim_indices": m.indices, "sim_indptr": m.indptr, "sim_shape": np.array(m.shape)}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Rebuild the similarity matrix."""
        shape = tuple(int(x) for x in arrays["sim_shape"])
        self._similarity = _without_diagonal(sp.csr_matrix((arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"]), shape=shape))

    @property
    def needs_training_matrix(self) -> bool:
        """Known users are scored from their interaction rows."""
        return True


def _bm25_weighted(user_items: sp.csr_matrix) -> sp.csr_matrix:
    """The users' rows weighted as implicit's BM25Recommender weighs them, each user by ln(items / (1 + their
    items)), with that weight exactly 0 where it is 0: numpy's log and log1p may differ in the last bit (numpy
    2.4's do), which gave a user of all but one item weights of 1e-16 and two items similarities of 1e-32 that
    counted as links."""
    defaults = BM25Recommender()
    weighted = bm25_weight(user_items.T, defaults.K1, defaults.B)  # items' rows: its idf is per user, in .col
    n_items = user_items.shape[1]
    none = np.bincount(weighted.col, minlength=user_items.shape[0]) + 1 == n_items
    weighted.data[none[weighted.col]] = 0
    return weighted.T.tocsr()


def _at_most(similarity: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's k largest entries: a row whose top k + 1 did not hold the item itself keeps one too many."""
    over = np.flatnonzero(np.diff(similarity.indptr) > k)
    if not len(over):
        return similarity
    similarity = similarity.copy()
    for row in over:  # rare: an item is nearly always its own most similar
        start, end = similarity.indptr[row], similarity.indptr[row + 1]
        order = np.argsort(-similarity.data[start:end], kind="stable")
        similarity.data[start + order[k:]] = 0
    similarity.eliminate_zeros()
    return similarity


def _without_diagonal(similarity: sp.csr_matrix) -> sp.csr_matrix:
    """The similarity less each item's to itself (implicit keeps it, the largest of its row; its own
    recommend leaves a user's items out) and any stored zero. Kept, it put whatever a shopper had viewed
    first in their list, and made an item with no neighbour look linked. Artifacts written since have
    neither, and load as they are; older ones lose them on load."""
    if not similarity.diagonal().any() and similarity.data.all():
        return similarity
    similarity = similarity.copy()  # an artifact's arrays may be read-only
    similarity.setdiag(0)
    similarity.eliminate_zeros()
    return similarity
