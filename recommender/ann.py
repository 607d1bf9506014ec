"""Approximate nearest neighbours over item vectors, for catalogues too big to score whole on every request.

faiss's HNSW graph proposes candidates by inner product; the caller re-scores them exactly
and applies its filters, so an answer never holds a filtered item and its scores are the
model's own. Only the candidate set is approximate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np

# Inner products of ALS or BPR factors are not a metric, but HNSW searched by inner product
# recalls 0.975 of the exact top 10 at efSearch 100 on power-law factors of a million items
# (bench/recommendations.py --items 1000000); mapping MIPS to L2 by an extra coordinate collapsed
# recall to 0.1 on such factors, because the many near-zero long-tail items all sit at the same far point.


# Links per node of the similar-items graph. Its unit-length vectors make cosine a true angle, which
# a sparse graph still searches deep: with the 1,000 most popular of 11,335 items unavailable, 16
# links recalled 0.99 of the exact 10 most similar, as 32 did, at less build time and memory.
SIMILAR_LINKS = 16


@dataclass(frozen=True)
class AnnSettings:
    """When a version gets an index, and how it is built and searched."""

    # Below this many items, one matrix-vector product over the catalogue is cheaper than a graph.
    min_items: int = 200_000
    # Links per node. 16 recalled the unfiltered top 10 as well as 32, but when the filter removes
    # what users score highest (best sellers out of stock) their best eligible items sit deep in
    # the ranking, which a sparser inner-product graph reaches far less often: with the 300 most
    # popular of 11,335 items unavailable, recall@10 0.545 at 16 links and 0.967 at 32
    # (bench/ann_filters.py). 32 costs twice the links' memory and more build time. The graph for
    # similar items has SIMILAR_LINKS whatever this says.
    m: int = 32
    ef_construction: int = 32
    # Candidates explored per query; a request for more than this explores as many as it asks for.
    ef_search: int = 100
    # At most this many known users, the most active first, get their candidates searched at
    # training time (while a time budget lasts) and ranked, so that their first request on any worker
    # is a lookup, not a graph search (over 1 ms of a worker's CPU at a million items under load).
    # Each costs 1.6 kB of the artifact and about 1.7 kB of every worker's memory.
    precomputed_users: int = 50_000

    def __post_init__(self) -> None:
        if self.min_items < 0:
            raise ValueError("min_items cannot be negative")
        if not 4 <= self.m <= 128:
            raise ValueError("m must be between 4 and 128")
        if not 8 <= self.ef_construction <= 1024 or not 8 <= self.ef_search <= 4096:
            raise ValueError("ef_construction must be between 8 and 1024 and ef_search between 8 and 4096")
        if self.precomputed_users < 0:
            raise ValueError("precomputed_users cannot be negative")

    def stored(self) -> dict[str, Any]:
        """What an artifact and a version's `data` record: the settings of the graph and its search.

        `precomputed_users` only bounds training; the artifact holds what it made, and a worker
        still on older code during a rolling upgrade would refuse an unknown field.
        """
        return {k: v for k, v in asdict(self).items() if k != "precomputed_users"}

    def applies_to(self, n_items: int) -> bool:
        """Whether a catalogue of n_items gets an index."""
        return n_items >= self.min_items


class VectorIndex:
    """An HNSW graph over vectors, searched by inner product."""

    def __init__(self, index: Any, settings: AnnSettings) -> None:
        self._index = index
        self.settings = settings

    @classmethod
    def build(cls, vectors: np.ndarray, settings: AnnSettings, compact: bool = False, links: int | None = None) -> "VectorIndex":
        """Index every row of `vectors` (faiss uses all cores here, through OpenMP), with `links` per node (settings.m by default).

        `compact` keeps 8-bit codes instead of the floats: a quarter of the memory, for an
        index whose vectors the caller need not read back (its candidates are re-scored anyway).
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        m = settings.m if links is None else links
        index: Any
        if compact:
            index = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)  # type: ignore[arg-type]
            index.train(vectors)
        else:
            index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.ef_construction
        index.add(vectors)
        return cls(index, settings)

    def vectors(self) -> np.ndarray:
        """A copy of the indexed vectors, exactly as given to build (not for a compact index)."""
        storage = faiss.downcast_index(self._index.storage)
        if not isinstance(storage, faiss.IndexFlat):
            raise TypeError("a compact index keeps codes, not its vectors")
        return faiss.vector_to_array(storage.codes).view(np.float32).reshape(len(self), storage.d).copy()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """Up to k row numbers whose inner product with `query` is (approximately) largest, unordered."""
        k = min(k, len(self))
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        params = faiss.SearchParametersHNSW(efSearch=max(self.settings.ef_search, k))  # type: ignore[attr-defined]  # faiss's stubs lag its API
        _, found = self._index.search(np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1), k, params=params)
        rows = found[0]
        return rows[rows >= 0]

    def candidates_many(self, queries: np.ndarray, k: int) -> np.ndarray:
        """For each row of `queries`, what `candidates` would answer, sorted and padded with -1 (all cores, through OpenMP)."""
        k = min(k, len(self))
        if k <= 0 or len(queries) == 0:
            return np.full((len(queries), max(k, 0)), -1, dtype=np.int32)
        params = faiss.SearchParametersHNSW(efSearch=max(self.settings.ef_search, k))  # type: ignore[attr-defined]
        _, found = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        # -1 (a missing candidate) must stay last once sorted.
        found = np.where(found < 0, np.iinfo(np.int64).max, found)
        found.sort(axis=1)
        return np.where(found == np.iinfo(np.int64).max, -1, found).astype(np.int32)

    def to_array(self) -> np.ndarray:
        """The whole index as bytes in a uint8 array (storable in an .npz without pickle)."""
        return np.asarray(faiss.serialize_index(self._index))

    @classmethod
    def from_array(cls, data: np.ndarray, settings: AnnSettings) -> "VectorIndex":
        """Load an index written by to_array."""
        return cls(faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8)), settings)

    def describe(self) -> dict[str, Any]:
        """What a version's `data` reports about its index."""
        return {"library": f"faiss {faiss.__version__}", "kind": "hnsw", "items": len(self), **self.settings.stored()}
