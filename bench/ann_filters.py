"""Recall of the approximate index when the filter removes the items users score highest.

Best sellers out of stock are the hard case for a graph index: every user's best eligible items
then sit deep in their ranking, where an inner-product HNSW graph reaches fewer of them. This
trains ALS on synthetic power-law data, builds the index the service builds (forced on with a
threshold of 1), makes the most popular items unavailable, and compares each user's top 10 from
the serving index (`ServingIndex.top_for_user`, the path a request takes) with exact scoring
of the same factors under the same filter, in the same run. Below 10,000 eligible items the
service scores exactly, so the catalogue is sized to keep more than that eligible.

Each line is measured for the graph's links per node (`--links`, AnnSettings.m) in the same run.

    .venv/bin/python bench/ann_filters.py [--items 17000] [--users 3000] [--events 80000] [--unavailable 0,30,100,300,1000] [--links 16,32]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender.ann import SIMILAR_LINKS, AnnSettings  # noqa: E402
from recommender.index import ServingIndex  # noqa: E402
from recommender.matrix import InteractionMatrix, MatrixSettings  # noqa: E402
from recommender.training import TrainingSettings, train  # noqa: E402
from tests.recommender.test_library import synthetic_matrix  # noqa: E402


def main() -> None:
    """Train once, then measure recall@10 for each number of unavailable best sellers."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=17_000)
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument("--events", type=int, default=80_000)
    parser.add_argument("--sample", type=int, default=200, help="users scored for each line")
    parser.add_argument("--unavailable", default="0,30,100,300,1000", help="comma-separated counts of the most popular items made unavailable")
    parser.add_argument("--links", default="16,32", help="comma-separated links per node of the graphs compared")
    args = parser.parse_args()
    started = time.perf_counter()
    confidence = synthetic_matrix(users=args.users, items=args.items, events=args.events, seed=8)
    matrix = InteractionMatrix([f"u{u}" for u in range(confidence.shape[0])], [f"i{i}" for i in range(confidence.shape[1])], confidence, confidence)
    trained = train(matrix, "als", {"factors": 32, "iterations": 8}, TrainingSettings(evaluate=False))
    by_popularity = np.argsort(-trained.popularity, kind="stable")
    users = np.random.default_rng(1).choice(confidence.shape[0], size=min(args.sample, confidence.shape[0]), replace=False)
    print(f"SIMILAR_LINKS {SIMILAR_LINKS}; {confidence.shape[1]:,} items, {confidence.shape[0]:,} users; ALS in {time.perf_counter() - started:.0f} s")
    print("| links per node (users' graph) | most popular items unavailable | eligible items (mean) | recall@10 against exact scoring | similar items: recall@10 (SIMILAR_LINKS) |")
    print("| --- | --- | --- | --- | --- |")
    for links in (int(m) for m in args.links.split(",")):
        index = ServingIndex.from_trained("v1", trained, MatrixSettings(), dataclasses.replace(AnnSettings(min_items=1), m=links))
        for unavailable in (int(u) for u in args.unavailable.split(",")):
            recall, eligible = _recall(index, confidence, users, by_popularity[:unavailable])
            similar = _similar_recall(index, by_popularity, unavailable, len(users))
            print(f"| {links} | {unavailable:,} | {eligible:,.0f} | {recall:.3f} | {similar:.3f} |")


def _recall(index: ServingIndex, confidence: Any, users: np.ndarray, unavailable: np.ndarray) -> tuple[float, float]:
    """Mean recall@10 of the served lists against exact scoring, and the mean number of eligible items."""
    model = index._factors
    available = np.ones(index.n_items, dtype=bool)
    available[unavailable] = False
    recall, eligible = [], []
    for user in users:
        allowed = available.copy()
        allowed[confidence[user].indices] = False  # what a user has bought is filtered as well
        exact = {item for item, _ in index.top((model.item_factors @ model.user_factors[user]).astype(np.float32), allowed, 10)}
        _, served = index.top_for_user(f"u{user}", [], 0.0, allowed.copy(), 10)
        recall.append(len(exact & {item for item, _ in served}) / 10)
        eligible.append(int(allowed.sum()))
    return float(np.mean(recall)), float(np.mean(eligible))


def _similar_recall(index: ServingIndex, by_popularity: np.ndarray, unavailable: int, sample: int) -> float:
    """Mean recall@10 of similar items (`top_similar`) against exact cosine, for items drawn from the 3,000 most popular."""
    model = index._factors
    available = np.ones(index.n_items, dtype=bool)
    available[by_popularity[:unavailable]] = False
    recall = []
    for item in np.random.default_rng(1).choice(by_popularity[:3_000], size=sample, replace=False):
        allowed = available.copy()
        allowed[item] = False
        exact = {found for found, _ in index.top(np.asarray(model.similar_to(item, None), dtype=np.float32), allowed, 10)}
        served = index.top_similar(index.item_ids[item], allowed, 10) or []
        recall.append(len(exact & {found for found, _ in served}) / 10)
    return float(np.mean(recall))

if __name__ == "__main__":
    main()
