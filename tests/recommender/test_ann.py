"""The approximate index: its recall against exact scoring, exact filters, and artifacts that round-trip."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import recommender.index
import recommender.search_ahead
from recommender.ann import SIMILAR_LINKS, AnnSettings, VectorIndex
from recommender.artifacts import loads
from recommender.index import ServingIndex
from recommender.matrix import InteractionMatrix, MatrixSettings
from recommender.training import TrainedModel, TrainingSettings, train
from tests.recommender.test_library import synthetic_matrix

ITEMS = 3_000


def confidence_matrix():  # noqa: ANN201 - a users x items CSR matrix
    return synthetic_matrix(users=2_000, items=ITEMS, events=60_000, seed=8)


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    confidence = confidence_matrix()
    matrix = InteractionMatrix([f"u{u}" for u in range(confidence.shape[0])], [f"i{i}" for i in range(confidence.shape[1])], confidence, confidence)
    return train(matrix, "als", {"factors": 16, "iterations": 5}, TrainingSettings(evaluate=False))


@pytest.fixture(scope="module")
def indexed(trained) -> ServingIndex:
    index = ServingIndex.from_trained("v1", trained, MatrixSettings(), AnnSettings(min_items=1))
    assert index.ann is not None and index.similar_ann is not None and len(index.ann) == index.n_items
    return index


def exact_top(index: ServingIndex, scores: np.ndarray, allowed: np.ndarray, n: int) -> list[str]:
    return [item for item, _ in index.top(scores.astype(np.float32), allowed, n)]


def test_settings_are_bounded_and_the_threshold_decides():
    assert AnnSettings().min_items == 200_000 and AnnSettings().applies_to(200_000) and not AnnSettings().applies_to(199_999)
    for bad in ({"min_items": -1}, {"m": 2}, {"ef_search": 5}, {"ef_construction": 5000}, {"precomputed_users": -1}):
        with pytest.raises(ValueError):
            AnnSettings(**bad)


def test_recall_at_10_against_exact_scoring(indexed):
    model = indexed._factors
    users = np.random.default_rng(1).choice(len(indexed.user_ids), size=200, replace=False)
    everything = np.ones(indexed.n_items, dtype=bool)
    recall = []
    for user in users:
        exact = set(exact_top(indexed, model.item_factors @ model.user_factors[user], everything, 10))
        _, got = indexed.top_for_user(f"u{user}", [], 0.0, everything.copy(), 10)
        recall.append(len(exact & {item for item, _ in got}) / 10)
    assert np.mean(recall) >= 0.95


@pytest.mark.parametrize("exact_below", [0, 10_000])
def test_no_filtered_item_ever_appears_and_n_come_back_while_the_catalogue_has_them(indexed, monkeypatch, exact_below):
    monkeypatch.setattr(recommender.index, "EXACT_BELOW", exact_below)
    monkeypatch.setattr(recommender.index, "MAX_CANDIDATES", 64)  # so that sparse filters widen, then fall back
    model = indexed._factors
    rng = np.random.default_rng(2)
    for share in (1.0, 0.3, 0.02, 0.001):
        for user in rng.choice(len(indexed.user_ids), size=15, replace=False):
            allowed = rng.random(indexed.n_items) < share
            n = int(rng.choice([1, 10, 100]))
            _, got = indexed.top_for_user(f"u{user}", [], 0.0, allowed.copy(), n)
            rows = [indexed.item_index[item] for item, _ in got]
            assert all(allowed[rows]) and len(set(rows)) == len(rows)
            assert len(got) == min(n, int(allowed.sum()))
            # The scores are the model's own, in order, whichever path chose the items.
            exact = model.item_factors[rows] @ model.user_factors[user]
            assert [score for _, score in got] == pytest.approx(exact.tolist(), rel=1e-5, abs=1e-6)
            assert [score for _, score in got] == sorted((score for _, score in got), reverse=True)
            if allowed.sum() <= 64:  # scored exactly: the same answer as scoring everything
                assert [item for item, _ in got] == exact_top(indexed, model.item_factors @ model.user_factors[user], allowed, n)


def test_recall_holds_when_the_best_sellers_are_unavailable(indexed, trained, monkeypatch):
    """Users' best eligible items then sit deep in their ranking: a graph of too few links reached about half of them."""
    monkeypatch.setattr(recommender.index, "EXACT_BELOW", 0)  # the graph's path, as at a million items
    model = indexed._factors
    available = np.ones(indexed.n_items, dtype=bool)
    available[np.argsort(-trained.popularity, kind="stable")[:150]] = False
    recall = []
    for user in np.random.default_rng(3).choice(len(indexed.user_ids), size=150, replace=False):
        allowed = available.copy()
        allowed[trained.matrix.confidence[user].indices] = False
        exact = set(exact_top(indexed, model.item_factors @ model.user_factors[user], allowed, 10))
        _, got = indexed.top_for_user(f"u{user}", [], 0.0, allowed.copy(), 10)
        recall.append(len(exact & {item for item, _ in got}) / 10)
    assert np.mean(recall) >= 0.9


def test_new_users_fold_in_and_users_without_usable_events_get_popular_items(indexed):
    allowed = np.ones(indexed.n_items, dtype=bool)
    strategy, got = indexed.top_for_user("newcomer", [("i5", "purchase", 0.0), ("i9", "view", 0.0)], 0.0, allowed.copy(), 10)
    assert strategy == "personalized" and len(got) == 10
    strategy, got = indexed.top_for_user("stranger", [("unknown-item", "view", 0.0)], 0.0, allowed.copy(), 10)
    assert strategy == "popular" and got == indexed.top(indexed.popularity.astype(np.float32), allowed, 10)


def test_similar_items_never_include_the_item_and_match_exact_cosine(indexed):
    model = indexed._factors
    overlap = []
    for item in range(0, ITEMS, 150):
        allowed = np.ones(indexed.n_items, dtype=bool)
        allowed[::7] = False
        got = indexed.top_similar(f"i{item}", allowed.copy(), 10)
        assert got is not None and len(got) == 10 and f"i{item}" not in {i for i, _ in got}
        assert all(allowed[indexed.item_index[i]] for i, _ in got)
        cosine = model.similar(item)
        cosine[item] = -np.inf
        overlap.append(len({i for i, _ in got} & set(exact_top(indexed, cosine, allowed, 10))) / 10)
    assert np.mean(overlap) >= 0.95
    assert indexed.top_similar("unknown", np.ones(indexed.n_items, dtype=bool), 10) is None


def test_similar_items_under_narrow_filters_still_come_n_at_a_time_and_never_filtered(indexed):
    # Most of the remembered candidates fail these filters, so the answers come from a search of their own.
    rng = np.random.default_rng(6)
    for share in (0.2, 0.02, 0.004):
        for row in rng.choice(indexed.n_items, size=20, replace=False):
            item = indexed.item_ids[row]
            allowed = rng.random(indexed.n_items) < share
            got = indexed.top_similar(item, allowed, 10)
            assert got is not None and len(got) == min(10, np.count_nonzero(np.delete(allowed, row)))
            assert all(allowed[indexed.item_index[i]] and i != item for i, _ in got)
            assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
            assert got == dataclasses.replace(indexed).top_similar(item, allowed, 10)  # another worker, its memory empty


def test_the_artifact_keeps_the_item_factors_once_and_answers_the_same(indexed):
    data = indexed.to_bytes()
    arrays, meta = loads(data)
    assert "model_item_factors" not in arrays and {"ann_users", "ann_items"} <= set(arrays) and meta["ann"]["m"] == 32
    loaded = ServingIndex.from_bytes(data)
    # Links at the graphs' lowest level (twice their links per node): the users' graph has settings.m, the similar items' SIMILAR_LINKS.
    assert loaded.ann._index.hnsw.nb_neighbors(0) == 2 * 32 and loaded.similar_ann._index.hnsw.nb_neighbors(0) == 2 * SIMILAR_LINKS == 32
    assert np.array_equal(loaded._factors.item_factors, indexed._factors.item_factors)
    allowed = np.ones(indexed.n_items, dtype=bool)
    for user in ("u1", "u17", "u400"):
        assert loaded.top_for_user(user, [], 0.0, allowed.copy(), 20) == indexed.top_for_user(user, [], 0.0, allowed.copy(), 20)
    assert loaded.top_similar("i3", allowed.copy(), 5) == indexed.top_similar("i3", allowed.copy(), 5)


def test_users_searched_at_training_time_get_what_a_search_per_request_gives(indexed, trained, monkeypatch):
    """The most active users' candidates come from training; everyone's answers are the same as searching on request."""
    counts = np.diff(confidence_matrix().indptr)
    assert indexed.ranked_users is not None and indexed.ranked_rows is not None
    assert len(indexed.ranked_users) == np.count_nonzero(counts)  # one batch holds every user with events
    monkeypatch.setattr(recommender.search_ahead, "PRECOMPUTE_BATCH", 300)
    few = dataclasses.replace(indexed, ranked_users=None, ranked_rows=None, ranked_scores=None)
    few._search_ahead(trained, limit=10_000, budget_seconds=0.0)  # no time left after the first batch
    assert few.ranked_users is not None and len(few.ranked_users) == 300
    assert counts[few.ranked_users].min() >= counts[np.setdiff1d(np.arange(len(counts)), few.ranked_users)].max()
    loaded = ServingIndex.from_bytes(few.to_bytes())
    assert np.array_equal(loaded.ranked_rows, few.ranked_rows) and np.array_equal(loaded.ranked_users, few.ranked_users)
    assert np.array_equal(loaded.ranked_scores, few.ranked_scores, equal_nan=True)
    # An artifact from before scores were stored holds each user's candidate rows sorted, -1 last.
    unscored = np.where(few.ranked_rows < 0, np.iinfo(np.int32).max, few.ranked_rows)
    unscored.sort(axis=1)
    older = dataclasses.replace(few, ranked_rows=np.where(unscored == np.iinfo(np.int32).max, -1, unscored), ranked_scores=None)
    ahead = few.ranked_users[:20].tolist()
    others = np.setdiff1d(np.random.default_rng(5).choice(len(indexed.user_ids), size=60, replace=False), few.ranked_users)[:20].tolist()
    searched = dataclasses.replace(indexed, ranked_users=None, ranked_rows=None, ranked_scores=None)
    expected = {user: searched._rank_known_user(user) for user in ahead + others}
    searches = []
    original = VectorIndex.candidates
    monkeypatch.setattr(VectorIndex, "candidates", lambda self, query, k: searches.append(k) or original(self, query, k))
    for index in (few, loaded, older):
        for user in ahead:
            rows, scores = index._rank_known_user(user)
            assert np.array_equal(rows, expected[user][0]) and np.array_equal(scores, expected[user][1])
        assert searches == []  # their rows came from training, not from a search
        for user in others:
            rows, scores = index._rank_known_user(user)
            assert np.array_equal(rows, expected[user][0]) and np.array_equal(scores, expected[user][1])
        assert len(searches) == len(others)
        searches.clear()


def test_an_items_score_is_the_same_bits_whichever_path_computed_it(indexed, monkeypatch):
    """A user's remembered list, a search of candidates and a pass over every item score an item alike:
    an order that flipped between ?n=3 and ?n=100 on a one-bit difference would be a different answer."""
    monkeypatch.setattr(recommender.index, "EXACT_BELOW", 0)
    monkeypatch.setattr(recommender.index, "MAX_CANDIDATES", 16)  # n=20 then falls back to scoring every item
    everything = np.ones(indexed.n_items, dtype=bool)
    for user in range(0, 400, 7):
        rows, scores = indexed._rank_known_user(user)
        remembered = {indexed.item_ids[r]: s for r, s in zip(rows.tolist(), scores.tolist())}
        for n in (5, 20):  # a search of candidates, then the pass over every item
            _, got = indexed.top_for_user(f"u{user}", [], 0.0, everything.copy(), n)
            assert [s for i, s in got if i in remembered] == [remembered[i] for i, _ in got if i in remembered]


def test_a_batch_search_pads_with_minus_one_when_the_graph_is_smaller_than_asked():
    vectors = np.random.default_rng(6).normal(size=(50, 8)).astype(np.float32)
    graph = VectorIndex.build(vectors, AnnSettings(min_items=0))
    queries = np.random.default_rng(7).normal(size=(5, 8)).astype(np.float32)
    batch = graph.candidates_many(queries, 200)
    assert batch.shape == (5, 50) and batch.dtype == np.int32  # k is capped at the graph's size
    for query, row in zip(queries, batch):
        assert np.array_equal(row[row >= 0], np.sort(graph.candidates(query, 200)))
    assert graph.candidates_many(queries[:0], 10).shape == (0, 10)


def test_popular_items_are_the_most_popular_allowed_ties_to_the_earlier_item(indexed):
    rng = np.random.default_rng(3)
    popularity = indexed.popularity
    ranking = np.lexsort((np.arange(indexed.n_items), -popularity))
    for share in (1.0, 0.1, 0.001, 0.0):
        allowed = rng.random(indexed.n_items) < share
        for n in (1, 10, 100):
            expected = [(f"i{i}", float(popularity[i])) for i in ranking[allowed[ranking]][:n]]
            assert indexed.top_popular(allowed, n) == expected


def test_a_compact_index_cannot_give_its_vectors_back():
    vectors = np.random.default_rng(4).normal(size=(300, 8)).astype(np.float32)
    assert np.array_equal(VectorIndex.build(vectors, AnnSettings(min_items=0)).vectors(), vectors)
    with pytest.raises(TypeError):
        VectorIndex.build(vectors, AnnSettings(min_items=0), compact=True).vectors()
