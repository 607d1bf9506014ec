"""The recommendation checks again, with every factor model served from an approximate nearest-neighbour index.

ANN_MIN_ITEMS is set to 1 so that the small test catalogues get an index, and the exact
path for few eligible items is switched off, so that every answer goes through the graph
search, its filter and its widening.
"""
from __future__ import annotations

import dataclasses

import pytest

import recommender.index
from tests.helpers import get_ok, post_ok
from tests.http.test_recommendations import *  # noqa: F401,F403 - the same tests, collected again with the fixtures below
from tests.http.test_recommendations import ids, recs

del test_small_catalogues_are_scored_exactly  # noqa: F821 - the one check that is about having no index


@pytest.fixture
def config(config):
    return dataclasses.replace(config, ann_min_items=1)


@pytest.fixture(autouse=True)
def always_search_the_index(monkeypatch):
    monkeypatch.setattr(recommender.index, "EXACT_BELOW", 0)


def test_the_version_reports_its_index_and_its_build_time(trained):
    ann = trained["data"]["ann"]
    assert ann["kind"] == "hnsw" and ann["items"] == trained["data"]["items"] == 24
    assert ann["library"].startswith("faiss") and ann["build_seconds"] >= 0
    assert 0 < ann["precomputed_users"] <= trained["data"]["users"]  # every user with events, below the limit
    assert "index_seconds" in trained["data"]["timings"]


def test_every_filter_holds_and_n_items_come_back_while_the_catalogue_has_them(client, auth, trained):
    h = auth("storefront")
    everything = ids(recs(client, auth, "ua3", "?n=24"))
    assert len(everything) == 24
    post_ok(client, "/v1/events", {"events": [{"event_id": f"buy{k}", "user_id": "ua3", "item_id": item, "type": "purchase"} for k, item in enumerate(everything[:5])]}, h)
    post_ok(client, "/v1/items", {"items": [{"item_id": item, "available": False} for item in everything[5:10]]}, h)
    excluded = everything[10:14]
    answer = ids(recs(client, auth, "ua3", f"?n=24&exclude={','.join(excluded)}"))
    assert sorted(answer) == sorted(everything[14:])  # all that is left, nothing filtered
    assert ids(recs(client, auth, "ua3", f"?n=3&exclude={','.join(excluded)}")) == answer[:3]
    similar = get_ok(client, f"/v1/items/{everything[14]}/similar?n=24", h)
    assert everything[14] not in ids(similar) and not set(everything[5:10]) & set(ids(similar))
    assert len(similar["items"]) == 24 - 1 - 5
