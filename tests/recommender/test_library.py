"""recommender/ on its own: the matrix, the holdout split, ranking metrics and ALS catching up after evaluation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.base import best_first
from recommender.evaluation import holdout_split, ranking_metrics
from recommender.matrix import CodedEvents, MatrixSettings, build_matrix, row_for_events
from recommender.models import ALGORITHMS
from recommender.models.als import ALS
from recommender.synthetic import generate


def synthetic_matrix(users: int = 3000, items: int = 400, events: int = 60_000, seed: int = 5) -> sp.csr_matrix:
    data = generate(users, items, events, seed=seed, exponent=1.0)
    coded = CodedEvents.from_ids([f"u{u}" for u in data.users], [f"i{i}" for i in data.items], [str(t) for t in data.types], data.timestamps.tolist())
    return build_matrix(coded, MatrixSettings(), now=float(data.timestamps.max())).confidence


def test_matrix_sums_weights_per_cell_and_scales_confidence():
    settings = MatrixSettings(weights={"view": 1.0, "purchase": 8.0}, scaling="log", alpha=2.0, epsilon=4.0)
    events = CodedEvents.from_ids(["a", "a", "a", "b"], ["x", "x", "y", "x"], ["view", "purchase", "view", "view"], [0, 0, 0, 0])
    m = build_matrix(events, settings, now=0.0)
    assert m.user_ids == ["a", "b"] and m.item_ids == ["x", "y"]
    assert m.strength.toarray().tolist() == [[9.0, 1.0], [1.0, 0.0]]
    assert m.confidence[0, 0] == pytest.approx(1 + 2.0 * math.log1p(9.0 / 4.0), rel=1e-6)


def test_zero_weight_events_leave_their_user_unknown_and_codes_may_have_gaps():
    # Codes 0 and 2 are unused (gaps a database sequence can leave); "c" only clicked, which weighs nothing.
    events = CodedEvents(
        users=np.array([1, 3, 4]), items=np.array([5, 5, 7]), types=np.array([3, 3, 1], dtype=np.uint8), ts=np.zeros(3),
        user_ids=np.array([None, "a", None, "b", "c"], dtype=object),
        item_ids=np.array([None] * 5 + ["x", None, "y"], dtype=object),
    )
    m = build_matrix(events, MatrixSettings(weights={"purchase": 1.0, "click": 0.0}), now=0.0)
    assert m.user_ids == ["a", "b"] and m.item_ids == ["x"]
    assert m.strength.toarray().tolist() == [[1.0], [1.0]]


def test_time_decay_halves_a_weight_every_half_life():
    events = CodedEvents.from_ids(["a", "a"], ["new", "old"], ["purchase", "purchase"], [100 * 86_400.0, 86_400.0 * 93])
    m = build_matrix(events, MatrixSettings(weights={"purchase": 8.0}, half_life_days=7.0), now=100 * 86_400.0)
    assert m.strength.toarray()[0].tolist() == pytest.approx([8.0, 4.0])


def test_decay_fades_a_cells_confidence_not_only_its_strength_and_serving_reads_it_as_training_does():
    # The base of 1 every seen cell gets had stayed whatever the decay: a view 50 days old under a one-day
    # half-life weighed 1.0 against a fresh view's 1.118, then vanished once its weight underflowed.
    day = 86_400.0
    # An event older than 24 half-lives (MIN_DECAY) is left out: some 150 on, its confidence had been exactly 0.
    events = CodedEvents.from_ids(["a"] * 5, ["fresh", "old", "old", "yesterday", "ancient"], ["view", "view", "purchase", "view", "purchase"],
                                  [100 * day, 80 * day, 84 * day, 99 * day, 70 * day])
    settings = MatrixSettings(half_life_days=1.0)
    m = build_matrix(events, settings, now=100 * day)
    got = dict(zip(m.item_ids, m.confidence.toarray()[0].tolist()))
    old = 2.0**-20 + 8 * 2.0**-16  # a view 20 days old and a purchase 16 days old, in one cell
    assert sorted(got) == ["fresh", "old", "yesterday"]
    assert got["fresh"] == pytest.approx(1 + math.log1p(1 / 8), rel=1e-6)
    assert got["old"] == pytest.approx(old / 9 + math.log1p(old / 8), rel=1e-5) and got["old"] < 1e-4
    assert got["yesterday"] == pytest.approx(0.5 + math.log1p(0.5 / 8), rel=1e-6)
    served = row_for_events(settings, {item: i for i, item in enumerate(m.item_ids)}, len(m.item_ids), [
        ("fresh", "view", 100 * day), ("old", "view", 80 * day), ("old", "purchase", 84 * day), ("yesterday", "view", 99 * day), ("gone", "view", 100 * day)], 100 * day)
    assert served.toarray()[0].tolist() == m.confidence.toarray()[0].tolist()
    # Without decay, nothing changes: 1 + ln(1 + strength / 8).
    undecayed = build_matrix(events, MatrixSettings(), now=100 * day)
    assert dict(zip(undecayed.item_ids, undecayed.confidence.toarray()[0].tolist())) == pytest.approx(
        {"fresh": 1 + math.log1p(1 / 8), "old": 1 + math.log1p(9 / 8), "yesterday": 1 + math.log1p(1 / 8), "ancient": 1 + math.log1p(1)}, rel=1e-6)


def test_a_user_whose_every_event_has_faded_is_new_to_the_model_and_served_popular_items():
    day = 86_400.0
    events = CodedEvents.from_ids(["fresh", "fresh", "lapsed"], ["x", "y", "x"], ["purchase", "view", "purchase"], [100 * day, 99 * day, 60 * day])
    m = build_matrix(events, MatrixSettings(half_life_days=1.0), now=100 * day)
    assert m.user_ids == ["fresh"]
    served = row_for_events(MatrixSettings(half_life_days=1.0), {"x": 0, "y": 1}, 2, [("x", "purchase", 60 * day)], 100 * day)
    assert served.nnz == 0  # folded in with nothing: the index answers popular items


def test_an_epsilon_that_would_make_confidences_infinite_is_refused():
    with pytest.raises(ValueError, match="epsilon must be at least 1e-12"):
        MatrixSettings(epsilon=5e-324).check_bounds()


def test_a_full_split_puts_every_interaction_on_exactly_one_side():
    matrix = synthetic_matrix()
    split = holdout_split(matrix, 0.2, seed=3)
    assert (split.train + split.test != matrix).nnz == 0
    assert split.train.multiply(split.test).nnz == 0
    assert split.held_out_share == pytest.approx(0.2, abs=0.01)


def test_a_sampled_split_holds_out_only_from_the_sampled_users():
    matrix = synthetic_matrix()
    split = holdout_split(matrix, 0.2, seed=3, max_users=100)
    assert (split.train + split.test != matrix).nnz == 0
    losers = np.flatnonzero(np.diff(split.test.indptr) > 0)
    assert np.array_equal(losers, split.users)
    assert 80 <= len(losers) <= 100
    assert (np.diff(matrix.indptr)[losers] >= 2).all()
    assert split.held_out_share == pytest.approx(split.test.nnz / matrix.nnz)
    assert holdout_split(matrix, 0.2, seed=3, max_users=100).users.tolist() == split.users.tolist()


def test_ranking_metrics_match_their_definitions():
    recs = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]])
    relevant = [np.array([2, 10, 99]), np.array([42])]
    got = ranking_metrics(recs, relevant, k=10)
    dcg = 1 / math.log2(2 + 1) + 1 / math.log2(10 + 1)  # hits at ranks 2 and 10
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert got.precision_at_10 == pytest.approx((2 / 10 + 0) / 2)
    assert got.recall_at_10 == pytest.approx((2 / 3 + 0) / 2)
    assert got.ndcg_at_10 == pytest.approx((dcg / ideal + 0) / 2)
    assert got.users_evaluated == 2
    nobody = ranking_metrics(np.empty((0, 10), dtype=int), [], k=10)
    assert (nobody.precision_at_10, nobody.ndcg_at_10, nobody.recall_at_10, nobody.users_evaluated) == (None, None, None, 0)


def test_als_catches_up_the_evaluated_users_with_the_normal_equations():
    matrix = synthetic_matrix()
    split = holdout_split(matrix, 0.2, seed=3, max_users=20)
    assert split.held_out_share < ALS.REFIT_SHARE
    model = ALS({"factors": 8, "regularization": 1.0, "iterations": 5})
    model.fit(split.train)
    untouched = np.setdiff1d(np.arange(matrix.shape[0]), split.users)
    before = model.user_factors[untouched].copy()
    model.absorb(matrix, split.users, split.held_out_share)

    # Hu, Koren and Volinsky: x_u = (Y'Y + Y'(C_u - I)Y + lambda I)^-1 Y'C_u p_u, solved independently.
    Y = model.item_factors.astype(np.float64)
    for u in split.users[:5]:
        items = matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]
        c = matrix.data[matrix.indptr[u] : matrix.indptr[u + 1]].astype(np.float64)
        A = Y.T @ Y + (Y[items].T * (c - 1)) @ Y[items] + 1.0 * np.eye(Y.shape[1])
        expected = np.linalg.solve(A, Y[items].T @ c)
        assert model.user_factors[u] == pytest.approx(expected, rel=1e-3, abs=1e-4)
    assert np.array_equal(model.user_factors[untouched], before)


@pytest.mark.parametrize("algorithm", ["als", "bpr", "popularity"])
def test_fast_top_k_paths_agree_with_scoring_everything(algorithm):
    from recommender.base import Recommender
    from recommender.models import make_recommender

    matrix = synthetic_matrix()
    split = holdout_split(matrix, 0.2, seed=3, max_users=300)
    model = make_recommender(algorithm, {"iterations": 3} if algorithm != "popularity" else {})
    model.fit(split.train)
    fast = model.top_for_users(split.users, split.train, 10)
    reference = Recommender.top_for_users(model, split.users, split.train, 10)
    assert fast.shape == reference.shape == (len(split.users), 10)
    # Float ties can order differently; what each user is shown must not.
    assert (np.sort(fast, axis=1) == np.sort(reference, axis=1)).mean() > 0.99
    for u, recs in zip(split.users, fast):
        assert not np.isin(recs, split.train.indices[split.train.indptr[u] : split.train.indptr[u + 1]]).any()


def test_a_users_best_items_skip_items_whose_scores_are_not_finite():
    from recommender.models import make_recommender

    model = make_recommender("als", {"factors": 4, "iterations": 2})
    model.fit(synthetic_matrix())
    order, scores = model.best_for_user(3, 20)
    full = np.asarray(model.score_users(np.array([3]), None)[0])
    assert list(order) == list(best_first(full, None, 20)) and np.allclose(scores, full[order], rtol=1e-5)
    model._model.item_factors[order[:2]] = np.nan  # diverged items must never be shown
    damaged, _ = model.best_for_user(3, 20)
    assert order[0] not in damaged and order[1] not in damaged and len(damaged) == 20
    assert list(damaged) == list(order[2:]) + list(damaged[18:])


def test_a_users_best_items_tied_at_the_cut_are_the_earliest():
    # Tail items seen by the same few users end up with the same factors; every worker must cut alike.
    from recommender.models import make_recommender

    model = make_recommender("als", {"factors": 4, "iterations": 2})
    model.fit(synthetic_matrix())
    model._model.item_factors[50:300] = 1000 * model._model.user_factors[3]
    order, _ = model.best_for_user(3, 20)
    assert list(order) == list(range(50, 70))


def test_remembered_best_items_answer_exactly_as_scoring_everything():
    from recommender.index import RANKED_DEPTH, ServingIndex
    from recommender.matrix import InteractionMatrix
    from recommender.training import TrainingSettings, train

    confidence = synthetic_matrix()
    assert confidence.shape[1] > RANKED_DEPTH  # so that narrow filters must fall back
    matrix = InteractionMatrix([f"u{u}" for u in range(confidence.shape[0])], [f"i{i}" for i in range(confidence.shape[1])], confidence, confidence)
    trained = train(matrix, "als", {"factors": 8, "iterations": 3}, TrainingSettings(evaluate=False))
    index = ServingIndex.from_trained("v1", trained, MatrixSettings())
    rng = np.random.default_rng(9)
    answered = fell_back = 0
    for share in (1.0, 0.5, 0.05, 0.01):
        for user in rng.choice(confidence.shape[0], size=40, replace=False):
            allowed = rng.random(confidence.shape[1]) < share
            n = int(rng.choice([1, 10, 100]))
            blocked = {f"i{i}" for i in rng.choice(confidence.shape[1], size=5, replace=False)}
            remembered = index.top_for_known_user(f"u{user}", allowed, blocked, n)
            allowed[[index.item_index[b] for b in blocked]] = False
            _, scores = index.user_scores(f"u{user}", [], 0.0)
            if remembered is None:
                fell_back += 1
            else:
                answered += 1
                full = index.top(scores, allowed, n)
                # Remembered lists come from a matrix-vector product, full scoring from a matrix product: same items, scores to float rounding.
                assert [i for i, _ in remembered] == [i for i, _ in full]
                assert [s for _, s in remembered] == pytest.approx([s for _, s in full], rel=1e-5)
    assert answered > 50 and fell_back > 10
    assert index.top_for_known_user("nobody", np.ones(confidence.shape[1], dtype=bool), set(), 10) is None


@pytest.mark.parametrize("algorithm", ["als", "item_knn", "ease"])
def test_remembered_similar_items_answer_exactly_as_scoring_everything(algorithm):
    from recommender.index import SIMILAR_DEPTH, ServingIndex
    from recommender.matrix import InteractionMatrix
    from recommender.training import TrainingSettings, train

    confidence = synthetic_matrix()
    assert confidence.shape[1] > SIMILAR_DEPTH + 1  # so that narrow filters must search again
    matrix = InteractionMatrix([f"u{u}" for u in range(confidence.shape[0])], [f"i{i}" for i in range(confidence.shape[1])], confidence, confidence)
    params = {"factors": 8, "iterations": 3} if algorithm == "als" else {}
    index = ServingIndex.from_trained("v1", train(matrix, algorithm, params, TrainingSettings(evaluate=False)), MatrixSettings())
    rng = np.random.default_rng(4)
    for share in (1.0, 0.5, 0.05, 0.01):
        for item in rng.choice(confidence.shape[1], size=30, replace=False):
            allowed = rng.random(confidence.shape[1]) < share
            before = allowed.copy()
            n = int(rng.choice([1, 10, 100]))
            # Twice: the first call ranks and remembers, the second answers from memory.
            answers = [index.top_similar(f"i{item}", allowed, n) for _ in range(2)]
            assert np.array_equal(allowed, before)  # only read
            scores = index.item_scores(f"i{item}")
            allowed[item] = False
            full = index.top(scores, allowed, n)
            for got in answers:
                assert [i for i, _ in got] == [i for i, _ in full]
                assert [s for _, s in got] == pytest.approx([s for _, s in full], rel=1e-6)
    assert index._ranked_similar.cache_info().hits >= 4 * 30  # every second call at least


def test_best_first_breaks_every_tie_by_the_earlier_item_even_at_the_cut():
    rng = np.random.default_rng(12)
    for _ in range(200):
        scores = rng.integers(0, 4, size=int(rng.integers(1, 60))).astype(np.float32)  # ties everywhere
        scores[rng.random(len(scores)) < 0.1] = -np.inf
        allowed = rng.random(len(scores)) < 0.8
        k = int(rng.integers(1, 70))
        reference = sorted((i for i in range(len(scores)) if allowed[i] and np.isfinite(scores[i])), key=lambda i: (-scores[i], i))[:k]
        assert best_first(scores, allowed, k).tolist() == reference


def test_settings_beyond_the_bound_are_refused_for_new_runs_but_stored_ones_still_load():
    from recommender.index import ServingIndex
    from recommender.matrix import InteractionMatrix
    from recommender.training import TrainingSettings, train

    confidence = synthetic_matrix(users=200, items=50, events=2000)
    matrix = InteractionMatrix([f"u{u}" for u in range(200)], [f"i{i}" for i in range(50)], confidence, confidence)
    old = MatrixSettings(alpha=1e13, weights={"view": 1e300})  # accepted before the 1e12 bound
    with pytest.raises(ValueError, match="at most 1e\\+12"):
        old.check_bounds()
    trained = train(matrix, "item_knn", {}, TrainingSettings(evaluate=False))
    loaded = ServingIndex.from_bytes(ServingIndex.from_trained("v1", trained, old).to_bytes())
    assert loaded.settings == old


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_holdout_metrics_stay_within_0_and_1_on_a_catalogue_smaller_than_k(algorithm):
    from recommender.training import TrainingSettings, train
    from recommender.matrix import InteractionMatrix

    rng = np.random.default_rng(3)
    confidence = sp.csr_matrix((rng.random((60, 2)) < 0.7).astype(np.float32))
    matrix = InteractionMatrix([f"u{u}" for u in range(60)], ["i0", "i1"], confidence, confidence)
    trained = train(matrix, algorithm, {"factors": 2, "iterations": 2} if algorithm in ("als", "bpr") else {}, TrainingSettings(evaluate=True, seed=1))
    for name in ("precision_at_10", "ndcg_at_10", "recall_at_10"):
        assert 0.0 <= trained.metrics.get(name, 0.0) <= 1.0, (name, trained.metrics)
    assert trained.metrics.get("precision_at_10", 0.0) <= 0.2  # two items: at most 2 of 10 slots can hit


def test_making_and_fitting_a_factor_model_warns_of_no_blas_threads():
    import warnings

    import recommender.ann  # noqa: F401 - faiss, and with it an OpenMP BLAS that OPENBLAS_NUM_THREADS does not reach
    from recommender.models.als import ALS

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ALS({"factors": 4, "iterations": 2}).fit(synthetic_matrix(users=200, items=50, events=2000))
    assert [str(w.message) for w in caught if "OpenBLAS" in str(w.message)] == []


def test_a_user_and_item_the_fit_could_not_place_are_served_like_newcomers_not_with_zero_scores():
    """Held out for evaluation, an item's only interactions leave it (and a user who touched only it) at zero factors."""
    from recommender.index import ServingIndex
    from recommender.matrix import InteractionMatrix
    from recommender.models import make_recommender
    from recommender.training import TrainedModel

    base = synthetic_matrix().tolil()
    users, items = base.shape
    full = sp.lil_matrix((users + 2, items + 2), dtype=np.float32)
    full[:users, :items] = base
    full[users, items] = 1.0  # a newcomer who viewed only a new item
    full[3, items + 1] = 1.0  # a known user's view of another new item
    full = full.tocsr()
    held = full.tolil()
    held[users, items] = held[3, items + 1] = 0
    held = held.tocsr()
    held.eliminate_zeros()
    model = make_recommender("als", {"factors": 8, "iterations": 3})
    model.fit(held)
    model.absorb(full, np.array([users, 3]), 0.001)  # the small-share path: the users' least-squares step
    assert model.item_factors[items + 1].any()  # its user has other interactions: the item gets real factors
    ids = [f"u{u}" for u in range(users + 2)], [f"i{i}" for i in range(items + 2)]
    index = ServingIndex.from_trained("v1", TrainedModel(model=model, matrix=InteractionMatrix(*ids, full, full)), MatrixSettings())
    everything = np.ones(items + 2, dtype=bool)
    assert index.top_for_known_user(f"u{users}", everything, set(), 5) is None
    assert index.needs_events(f"u{users}")
    event = [(f"i{items}", "view", 0.0)]
    assert index.top_for_user(f"u{users}", event, 0.0, everything, 5)[0] == "popular"
    assert index.top_similar(f"i{items}", everything, 5) is None  # the service answers its category's popular items
    assert index.top_similar(f"i{items + 1}", everything, 5)
    # A narrow category holding the unplaced item: it scores 0, so it is listed once, not again after the rest.
    narrow = np.zeros(items + 2, dtype=bool)
    narrow[[0, 1, 2, items]] = True
    for listed in (index.top_for_user("u5", [], 0.0, narrow, 10)[1], index.top_for_user("new", [("i5", "view", 0.0)], 0.0, narrow, 10)[1],
                   index.top_similar("i5", narrow, 10)):
        names = [item for item, _ in listed]
        assert len(names) == len(set(names)) == 4, listed


def test_items_beyond_eases_max_items_are_not_answered_under_a_personal_label():
    from recommender.index import ServingIndex
    from recommender.matrix import InteractionMatrix
    from recommender.training import TrainingSettings, train

    confidence = synthetic_matrix()
    ids = [f"u{u}" for u in range(confidence.shape[0])], [f"i{i}" for i in range(confidence.shape[1])]
    trained = train(InteractionMatrix(*ids, confidence, confidence), "ease", {"max_items": 40, "min_coverage": 0.0}, TrainingSettings(evaluate=False))
    index = ServingIndex.from_trained("v1", trained, MatrixSettings())
    dropped = next(i for i in range(confidence.shape[1]) if i not in set(trained.model._kept.tolist()))
    kept = int(trained.model._kept[0])
    assert index.top_similar(f"i{dropped}", np.ones(confidence.shape[1], dtype=bool), 5) is None  # its category's popular, says the service
    assert index.user_scores("newcomer", [(f"i{dropped}", "view", 0.0)], 0.0)[0] == "popular"
    assert index.user_scores("newcomer", [(f"i{dropped}", "view", 0.0), (f"i{kept}", "view", 0.0)], 0.0)[0] == "personalized"


@pytest.mark.parametrize("algorithm", ["item_knn", "ease"])
def test_holdout_evaluation_ranks_an_item_item_model_as_serving_does(algorithm):
    # What the holdout metrics and tuning score must be the list a user is served: linked items, then the
    # unlinked by popularity, then the negatively linked; never ties at 0 in catalogue order.
    from recommender.index import ServingIndex
    from recommender.matrix import InteractionMatrix
    from recommender.training import TrainingSettings, train

    confidence = synthetic_matrix(users=800, items=300, events=4_000)  # sparse: many users with few links
    matrix = InteractionMatrix([f"u{u}" for u in range(confidence.shape[0])], [f"i{i}" for i in range(confidence.shape[1])], confidence, confidence)
    params = {"neighbours": 5} if algorithm == "item_knn" else {"l2": 5}
    index = ServingIndex.from_trained("v1", train(matrix, algorithm, params, TrainingSettings(evaluate=False)), MatrixSettings())
    users = np.arange(confidence.shape[0])
    evaluated = index.model.top_for_users(users, confidence, 10)
    compared = 0
    for user in users:
        row = confidence[user]
        if not row.nnz or not index._placed(row.indices):
            continue  # served popular items under "popular"
        allowed = np.ones(confidence.shape[1], dtype=bool)
        allowed[row.indices] = False
        scores = index._linked(np.asarray(index.model.score_row(row), dtype=np.float32))
        served = [index.item_index[i] for i, _ in index.top(scores, allowed, 10)]

        def rank(item: int) -> tuple[int, float]:  # equal only for items tied exactly, which either may cut
            return (0, float(index.popularity[item])) if not np.isfinite(scores[item]) else (1 if scores[item] > 0 else -1, float(scores[item]))

        assert [rank(i) for i in evaluated[user]] == [rank(i) for i in served], user
        compared += 1
    assert compared > 100


@pytest.mark.parametrize("similarity", ["bm25", "cosine"])
def test_item_knn_links_each_item_to_as_many_others_as_neighbours_says(similarity):
    from recommender.models.item_knn import ItemKNN

    rng = np.random.default_rng(4)
    user_items = sp.csr_matrix((rng.random((200, 40)) < 0.3).astype(np.float32))
    for neighbours in (1, 3):
        model = ItemKNN({"neighbours": neighbours, "similarity": similarity})
        model.fit(user_items)
        rows = [model.similar(item) for item in range(40)]
        links = np.array([np.count_nonzero(row) for row in rows])
        assert links.max() == neighbours and (links == neighbours).mean() > 0.9, links  # itself never counted among them
        assert not any(row[item] for item, row in enumerate(rows))
        assert model.placed_items().all()


def test_item_knn_without_a_single_link_fails_saying_so():
    from recommender.base import CannotTrain
    from recommender.models.item_knn import ItemKNN

    lonely = sp.csr_matrix(np.eye(5, dtype=np.float32))  # each user has one item of their own: no two items share a user
    with pytest.raises(CannotTrain, match="nothing links any two items"):
        ItemKNN({"similarity": "cosine"}).fit(lonely)
