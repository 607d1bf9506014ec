"""MovieLens latest-small through the HTTP service against popularity and a bare implicit ALS."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from recommender.evaluation import ranking_metrics
from recommender.matrix import MatrixSettings
from tests.datasets import MOVIELENS
from tests.helpers import get_ok, post_ok, train

PARAMS = {"factors": 64, "regularization": 10.0, "iterations": 15, "random_state": 42}
pytestmark = pytest.mark.skipif(not (MOVIELENS / "ratings.csv").exists(), reason="needs MovieLens latest-small (MOVIELENS_DIR)")


def load_ratings():
    with open(MOVIELENS / "ratings.csv") as f:
        rows = list(csv.DictReader(f))
    return [(f"u{r['userId']}", f"m{r['movieId']}", float(r["timestamp"])) for r in rows]


def test_service_beats_popularity_and_matches_bare_implicit(client, auth):
    ratings = load_ratings()
    rng = np.random.default_rng(2026)
    in_test = rng.random(len(ratings)) < 0.2
    train_rows = [r for r, t in zip(ratings, in_test) if not t]
    test_rows = [r for r, t in zip(ratings, in_test) if t]

    h = auth("storefront")
    for start in range(0, len(train_rows), 10_000):
        batch = [{"event_id": f"r{start + k}", "user_id": u, "item_id": i, "type": "purchase"} for k, (u, i, _) in enumerate(train_rows[start : start + 10_000])]
        assert post_ok(client, "/v1/events", {"events": batch}, h)["accepted"] == len(batch)
    model = train(client, auth("editor"), {"algorithm": "als", "params": PARAMS})
    assert model["status"] == "ready", model

    users = sorted({u for u, _, _ in test_rows})
    relevant = {}
    for u, i, _ in test_rows:
        relevant.setdefault(u, set()).add(i)
    served = [[x["item_id"] for x in get_ok(client, f"/v1/users/{u}/recommendations?n=10", h)["items"]] for u in users]

    # Reference 1: popularity (distinct users per item in the training split), minus each user's own items.
    user_items = {}
    for u, i, _ in train_rows:
        user_items.setdefault(u, set()).add(i)
    counts = {}
    for u, seen in user_items.items():
        for i in seen:
            counts[i] = counts.get(i, 0) + 1
    ranked = sorted(counts, key=lambda i: (-counts[i], i))
    popular = [[i for i in ranked if i not in user_items.get(u, set())][:10] for u in users]

    # Reference 2: a bare implicit ALS fit with the same parameters on the same matrix.
    uidx = {u: k for k, u in enumerate(user_items)}
    iidx = {i: k for k, i in enumerate(counts)}
    rows = [uidx[u] for u in user_items for _ in user_items[u]]
    cols = [iidx[i] for u in user_items for i in user_items[u]]
    confidence = MatrixSettings().confidence(np.full(len(rows), MatrixSettings().weights["purchase"]))
    matrix = sp.csr_matrix((confidence, (rows, cols)), shape=(len(uidx), len(iidx)))
    bare = AlternatingLeastSquares(**PARAMS)
    bare.fit(matrix, show_progress=False)
    item_names = list(iidx)
    bare_recs = []
    for u in users:
        if u not in uidx:
            bare_recs.append(popular[users.index(u)])
            continue
        got, _ = bare.recommend(uidx[u], matrix[uidx[u]], N=10, filter_already_liked_items=True)
        bare_recs.append([item_names[g] for g in got])

    def precision(lists):
        index = {i: k for k, i in enumerate(set(iidx) | {i for u in users for i in relevant[u]})}
        recs = np.array([[index.get(i, -1) for i in (lst + [""] * 10)[:10]] for lst in lists])
        rel = [np.array([index[i] for i in relevant[u]]) for u in users]
        return ranking_metrics(recs, rel, 10).precision_at_10

    ours, pop, reference = precision(served), precision(popular), precision(bare_recs)
    print(f"precision@10 service={ours:.4f} popularity={pop:.4f} bare implicit={reference:.4f}")
    assert ours >= 1.5 * pop
    assert abs(ours - reference) <= 0.05 * reference
