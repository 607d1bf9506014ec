"""The contract every registered model keeps, on two tribes of users whose right answers are known."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.artifacts import dumps, loads
from recommender.models import ALGORITHMS, make_recommender

# Small and fast settings; anything not named keeps its default.
FAST = {
    "als": {"factors": 8, "regularization": 0.1, "iterations": 10},
    "bpr": {"factors": 8, "learning_rate": 0.05, "iterations": 200},
    "ease": {"l2": 10.0},
}
TRIBE_USERS, TRIBE_ITEMS = 40, 15


def two_tribes(seed: int = 7) -> sp.csr_matrix:
    """Users 0..39 only touch items 0..14, users 40..79 only items 15..29; within a tribe, lower items are more popular."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for tribe in range(2):
        for u in range(TRIBE_USERS):
            for i in range(TRIBE_ITEMS):
                if rng.random() < 0.85 - 0.04 * i:
                    rows.append(tribe * TRIBE_USERS + u)
                    cols.append(tribe * TRIBE_ITEMS + i)
    data = 1.0 + rng.random(len(rows)).astype(np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(2 * TRIBE_USERS, 2 * TRIBE_ITEMS), dtype=np.float32)


def tribe_of_item(item: int) -> int:
    return item // TRIBE_ITEMS


@pytest.fixture(params=sorted(ALGORITHMS))
def fitted(request):
    matrix = two_tribes()
    model = make_recommender(request.param, FAST.get(request.param, {}))
    model.fit(matrix)
    return model, matrix


def test_known_users_get_unseen_items_of_their_own_tribe(fitted):
    model, matrix = fitted
    users = np.array([0, 5, 41, 77])
    top = model.top_for_users(users, matrix, 3)
    for u, recs in zip(users, top):
        assert not np.isin(recs, matrix[u].indices).any()
        if model.name != "popularity":
            assert all(tribe_of_item(i) == u // TRIBE_USERS for i in recs), (model.name, u, recs)


def test_someone_described_only_by_events_is_scored_like_their_tribe(fitted):
    model, matrix = fitted
    row = sp.csr_matrix(([2.0, 2.0], ([0, 0], [TRIBE_ITEMS + 1, TRIBE_ITEMS + 2])), shape=(1, matrix.shape[1]), dtype=np.float32)
    scores = np.asarray(model.score_row(row), dtype=np.float64)
    assert scores.shape == (matrix.shape[1],)
    best = np.argsort(-scores, kind="stable")[:5]
    if model.name == "popularity":
        assert scores.tolist() == model.score_row(sp.csr_matrix((1, matrix.shape[1]), dtype=np.float32)).tolist()
    else:
        assert all(tribe_of_item(i) == 1 for i in best), (model.name, best)


def test_similar_items_come_from_the_same_tribe(fitted):
    model, matrix = fitted
    if model.name == "popularity":
        # It says nothing about similarity: every item's "similar" items are the popularity ranking.
        empty = model.score_row(sp.csr_matrix((1, matrix.shape[1]), dtype=np.float32))
        assert np.asarray(model.similar(3)).tolist() == np.asarray(model.similar(7)).tolist() == np.asarray(empty).tolist()
        return
    scores = np.asarray(model.similar(3), dtype=np.float64).copy()
    scores[3] = -np.inf
    assert all(tribe_of_item(i) == 0 for i in np.argsort(-scores, kind="stable")[:5])


def test_the_artifact_restores_the_same_scores_without_pickle(fitted):
    model, matrix = fitted
    arrays, meta = loads(dumps(model.to_arrays(), {"params": model.describe_params()}))
    assert all(a.dtype != object for a in arrays.values())
    restored = make_recommender(model.name, meta["params"])
    restored.load_arrays(arrays)
    users = np.array([1, 50])
    training_rows = matrix if model.needs_training_matrix else None
    assert np.allclose(model.score_users(users, training_rows), restored.score_users(users, training_rows))
    row = matrix[3]
    assert np.allclose(model.score_row(row), restored.score_row(row))


def test_every_default_search_space_is_valid_for_its_model(fitted):
    from recommender.tuning import TuneError, search_space

    model, _ = fitted
    if not type(model).SEARCH_SPACE:
        with pytest.raises(TuneError, match="no parameter left to tune"):
            search_space(model.name, {}, {})
        return
    space = search_space(model.name, {}, {})
    assert set(space) == set(type(model).SEARCH_SPACE)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_unknown_parameters_are_refused_with_the_models_name(algorithm):
    with pytest.raises(ValueError, match=algorithm):
        make_recommender(algorithm, {"colour": "red"})


def test_loading_factors_in_a_request_thread_raises_no_blas_warning():
    # A worker loads versions in its request threads, where faiss's OpenMP OpenBLAS reports the
    # machine's thread count; implicit's constructor warned on every load although serving never fits.
    import threading
    import warnings

    import faiss  # noqa: F401  (the library that brings that OpenBLAS)

    from recommender.models.als import ALS

    arrays = {"user_factors": np.ones((3, 4), np.float32), "item_factors": np.ones((5, 4), np.float32)}
    caught: list[warnings.WarningMessage] = []

    def load() -> None:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            ALS({}).load_arrays(arrays)
        caught.extend(w for w in seen if "OpenBLAS" in str(w.message))

    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    assert caught == []


def test_item_knn_fails_when_its_confidences_overflow_single_precision():
    from recommender.models import make_recommender

    x = sp.random(300, 120, density=0.05, random_state=0, format="csr", dtype=np.float32)
    x.data[:] = 1e24
    with pytest.raises(ValueError, match="no finite similarity"):
        make_recommender("item_knn", {"similarity": "cosine"}).fit(x)


def test_item_knn_says_bm25_needs_a_bigger_catalogue_when_every_similarity_is_0():
    from recommender.models import make_recommender

    # BM25 weighs a user by ln(items / (1 + their items)): ln(3 / 3) = 0 for both users here, exactly,
    # although numpy 2.4's log(3) and log1p(2) differ in the last bit.
    x = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
    with pytest.raises(ValueError, match="every BM25 similarity is 0, since every user has 2 of the 3 items; train on a bigger catalogue or use similarity 'cosine'"):
        make_recommender("item_knn", {}).fit(x)
    make_recommender("item_knn", {"similarity": "cosine"}).fit(x)


def test_item_knn_bm25_links_no_items_through_a_user_whose_weight_is_0():
    """A user of all but one item weighs 0: their items are linked only through other users, never by rounding noise."""
    from recommender.models import make_recommender

    # User 0 has 13 of the 14 items (weight exactly 0: numpy 2.4's log(14) and log1p(13) differ in the last
    # bit); user 1 links items 12 and 13 alone.
    x = sp.lil_matrix((2, 14), dtype=np.float32)
    x[0, :13] = 1
    x[1, 12:] = 1
    model = make_recommender("item_knn", {})
    model.fit(sp.csr_matrix(x))
    assert not model.similar(0).any() and not model.similar(11).any()
    assert model.similar(12)[13] > 0 and model.placed_items().tolist() == [False] * 12 + [True, True]
