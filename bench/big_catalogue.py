"""The big-catalogue half of bench/recommendations.py: an approximate index against exact scoring.

Every item gets at least one event (a view by a random user) on top of the power-law
events, so that the model spans the whole catalogue. The same trained factors are then
served four times on one gunicorn: as trained (the index, and the most active users' candidates
searched and ranked at training time), as a twin that keeps those candidates but ranks them on a
user's first request (as artifacts written before 2026-12-05 do), as a twin whose every user is
searched on request, and as a twin without the index, scored exactly. First requests are measured
in three short rounds per version, each on users of its own and after its own /healthz run, and
the median ratio is reported. Similar items are asked for twice: for items spread evenly over
the catalogue (so that hardly any repeats within a run), and for item pages drawn by popularity,
as a storefront's visitors open them (the popular ones repeat, as in a shop).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from argparse import Namespace

import numpy as np

from bench.common import fresh_config, keys, prepare, server_env, settle, summary
from bench.load import median_ratio, report, rounds, run
from recommender.index import ServingIndex
from recommender.synthetic import generate
from service.store import model_versions
from service.store.artifacts import artifact_bytes
from service.store.catalogue import upsert_items
from service.store.events import insert_events
from service.usecases.model_training import activate, request_training
from service.usecases.training_run import run_training
from tests.server import gunicorn


def _load(svc, args: Namespace) -> None:  # noqa: ANN001
    data = generate(args.users, args.items, args.events, seed=1, start=time.time() - 90 * 86_400)
    for start in range(0, args.items, 10_000):
        upsert_items(svc.db, [{"item_id": f"i{i}", "category": f"c{data.item_categories[i]}", "available": True} for i in range(start, min(start + 10_000, args.items))])
    rng = np.random.default_rng(2)
    users = np.concatenate([data.users, rng.integers(0, args.users, args.items)])
    items = np.concatenate([data.items, np.arange(args.items)])
    types = np.concatenate([data.types, np.full(args.items, "view")])
    stamps = np.concatenate([data.timestamps, np.full(args.items, float(data.timestamps.min()))])
    total, started = len(users), time.perf_counter()
    for start in range(0, total, 10_000):
        stop = min(start + 10_000, total)
        insert_events(svc.db, [
            {"event_id": f"e{k}", "user_id": f"u{users[k]}", "item_id": f"i{items[k]}", "type": str(types[k]), "ts": float(stamps[k]),
             "value": float(data.values[k]) if k < args.events and not math.isnan(data.values[k]) else None}
            for k in range(start, stop)
        ])
        if (stop // 10_000) % 50 == 0 or stop == total:
            print(f"  loaded {stop:,} / {total:,} events ({stop / (time.perf_counter() - started):,.0f}/s)", flush=True)


def _recall(index: ServingIndex, users: int, sample: int = 500) -> tuple[float, float, float]:
    """Mean recall@10 of the index against scoring every item, and the in-process ms of each per query."""
    model = index._factors
    everything = np.ones(index.n_items, dtype=bool)
    recall, ann_s, exact_s = [], 0.0, 0.0
    for user in np.random.default_rng(3).choice(min(users, len(index.user_ids)), size=sample, replace=False):
        user_id = index.user_ids[user]
        t = time.perf_counter()
        _, got = index.top_for_user(user_id, [], 0.0, everything.copy(), 10)
        ann_s += time.perf_counter() - t
        t = time.perf_counter()
        exact = index.top(model.item_factors @ model.user_factors[user], everything, 10)
        exact_s += time.perf_counter() - t
        recall.append(len({i for i, _ in got} & {i for i, _ in exact}) / 10)
    return float(np.mean(recall)), 1000 * ann_s / sample, 1000 * exact_s / sample


def _twin(svc, version: str, index: ServingIndex, name: str, note: str, **changes) -> str:  # noqa: ANN001, ANN003
    """The same factors as another ready version, served with `changes` to the index."""
    twin = f"{version}-{name}"
    artifact = dataclasses.replace(index, version=twin, **changes).to_bytes()
    record = model_versions.get(svc.db, version)
    assert record is not None
    model_versions.insert(svc.db, twin, "als", dict(record.params), {}, {"evaluate": False}, activate=False)
    model_versions.finish(svc.db, twin, artifact, hashlib.sha256(artifact).hexdigest(), {}, {"note": f"the factors of {version}, {note}"}, 0.0, 0)
    return twin


def big_catalogue(args: Namespace) -> None:
    """Load, train with the index, check its recall, then serve it and its exact twin."""
    config = fresh_config("recs-ann")
    svc = prepare(config)
    print(f"data: {args.users:,} users, {args.items:,} items, {args.events:,} power-law events plus one view of every item")
    _load(svc, args)
    row = request_training(svc.db, config, "als", {}, activate=True, evaluation={"evaluate": False})
    model = run_training(svc.db, config, row.version)
    assert model.status == "ready", model
    timings, ann = model.data["timings"], model.data["ann"]
    fit = timings["fit_seconds"]
    print(f"model {model.version}: {model.data['items']:,} items; fit {fit:.1f} s, index {timings['index_seconds']:.1f} s "
          f"({ann['library']}, m {ann['m']}, ef_construction {ann['ef_construction']}, ef_search {ann['ef_search']}; "
          f"{ann['precomputed_users']:,} users searched ahead in {ann['precompute_seconds']:.1f} s); "
          f"training in all {model.training_seconds:.1f} s; artifact {model.data['artifact_bytes'] / 2**20:,.0f} MiB")
    print(f"  timings: {timings}")
    index = ServingIndex.from_bytes(artifact_bytes(svc.db, model.version, config.model_dir / f"{model.version}.npz"))
    recall, ann_ms, exact_ms = _recall(index, args.users)
    print(f"recall@10 of the index against exact scoring, 500 users: {recall:.4f} (aim 0.95); in process: index {ann_ms:.2f} ms, exact {exact_ms:.2f} ms per query")
    twins = {
        "rescored": _twin(svc, model.version, index, "rescored", "its searched-ahead candidates ranked on a user's first request", ranked_scores=None),
        "searched": _twin(svc, model.version, index, "searched", "every user's candidates searched on request", ranked_users=None, ranked_rows=None, ranked_scores=None),
        "exact": _twin(svc, model.version, index, "exact", "scored exactly", ann=None, similar_ann=None, ranked_users=None, ranked_rows=None, ranked_scores=None),
    }
    ahead = {int(index.user_ids[u][1:]) for u in (index.ranked_users if index.ranked_users is not None else [])}
    # Product pages are visited as items are popular: item pages drawn by their number of users.
    share = index.popularity / index.popularity.sum()
    pages = [f"/v1/items/{index.item_ids[i]}/similar?n=10" for i in np.random.default_rng(5).choice(index.n_items, size=50_000, p=share)]
    del index

    settle(svc)
    headers = {"Authorization": f"Bearer {keys(svc)['storefront']}"}
    warm = [f"/v1/users/u{u}/recommendations?n=10" for u in range(0, 400)]
    # Users searched ahead go to the versions that use them (the index as trained, and its rescored twin).
    ahead_pool = sorted(ahead - set(range(400)))
    others = sorted(set(range(400, args.users)) - ahead)
    # The twin that ranks on the first request is slower and needs fewer users for its rounds.
    split = len(ahead_pool) * 3 // 5
    exact_users = min(1000, len(others) // 4)
    pools = {"index": ahead_pool[:split], "rescored": ahead_pool[split:], "searched": others[exact_users:], "exact": others[:exact_users]}
    print(f"first requests: {split:,} users searched ahead for index, {len(pools['rescored']):,} for rescored, {len(pools['searched']):,} for searched, {exact_users:,} for exact")
    similar = [f"/v1/items/i{i}/similar?n=10" for i in range(0, args.items, max(1, args.items // 5000))]
    # Each user of a round is asked for once: a repeat would be a returning user, and cheaper. A round
    # ends when its users are done, or after the time a timed run of this length would take.
    first_seconds = max(1.0, args.seconds / 3)
    results = {}
    with gunicorn(server_env(config), workers=args.workers) as server:
        for name in ("index", "rescored", "searched", "exact"):
            if name in twins:
                activate(svc.db, twins[name])
            for _ in range(args.warmups):  # every worker loads the version (seconds each at this size)
                run(server.base, warm, headers, clients=args.clients, seconds=args.seconds)
            pool = pools[name]
            slices = [[f"/v1/users/u{u}/recommendations?n=10" for u in pool[k::3]] for k in range(3)]
            firsts = rounds(server.base, lambda k: slices[k], headers, 3, clients=args.clients, seconds=first_seconds, once=True)
            print(f"  {name}: first-request rounds of {', '.join(f'{load.requests:,} users in {load.seconds:.2f} s' for _, load in firsts)}")
            health = run(server.base, ["/healthz"], {}, clients=args.clients, seconds=args.seconds)
            returning = run(server.base, warm, headers, clients=args.clients, seconds=args.seconds)
            alike = run(server.base, similar, headers, clients=args.clients, seconds=args.seconds)
            visited = run(server.base, pages, headers, clients=args.clients, seconds=args.seconds)
            results[name] = (health, firsts, returning, alike, visited)
    print(f"gunicorn: {args.workers} workers, {args.clients} concurrent clients, {args.seconds:g} s each")
    for name, (health, firsts, returning, alike, visited) in results.items():
        for k, (before, first) in enumerate(firsts):
            print(report(f"{name}: first requests {k + 1}", first, before))
        print(report(f"{name}: GET /healthz", health))
        print(report(f"{name}: returning users", returning, health))
        print(report(f"{name}: similar items", alike, health))
        print(report(f"{name}: similar, by popularity", visited, health))
    first_ratio = {name: median_ratio(result[1]) for name, result in results.items()}
    (h1, f1, r1, s1, v1), (h2, _, _, s2, v2) = results["index"], results["exact"]
    p99 = float(np.median([load.p99_ms for _, load in f1]))
    print(f"first requests, median of 3 rounds: index {first_ratio['index']:.2f}x of /healthz (aim 0.7x), ranked on the first request {first_ratio['rescored']:.2f}x, "
          f"searched on request {first_ratio['searched']:.2f}x, exact {first_ratio['exact']:.2f}x; "
          f"similar items: index {s1.rps / h1.rps:.2f}x, exact {s2.rps / h2.rps:.2f}x; pages visited by popularity: index {v1.rps / h1.rps:.2f}x, exact {v2.rps / h2.rps:.2f}x")
    summary(ann_recall_at_10=recall, ann_first=first_ratio["index"], rescored_first=first_ratio["rescored"], searched_first=first_ratio["searched"], exact_first=first_ratio["exact"],
            ann_similar=s1.rps / h1.rps, exact_similar=s2.rps / h2.rps, ann_similar_by_popularity=v1.rps / h1.rps,
            ann_returning=r1.rps / h1.rps, ann_first_p99_ms=p99, index_seconds=timings["index_seconds"], fit_seconds=fit)
