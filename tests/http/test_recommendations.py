"""Recommendations, similar and popular items through the HTTP API."""
from __future__ import annotations

import time

import pytest

from service.usecases.model_training import request_training
from service.usecases.training_run import run_training
from tests.helpers import get_ok, iso, post_ok, train, two_tribes


@pytest.fixture
def trained(client, auth):
    two_tribes(client, auth("storefront"))
    model = train(client, auth("editor"))
    assert model["status"] == "ready", model
    return model


def recs(client, auth, user, query=""):
    return get_ok(client, f"/v1/users/{user}/recommendations{query}", auth("storefront"))


def ids(body):
    return [i["item_id"] for i in body["items"]]


def test_model_records_metrics_data_and_is_active(client, auth, trained):
    assert trained["active"] is True and trained["algorithm"] == "als"
    assert "activation" not in trained["data"]  # the very first activation, with no app_state row before it
    assert {"precision_at_10", "ndcg_at_10", "popularity_precision_at_10"} <= set(trained["metrics"])
    assert trained["data"]["users"] == 60 and trained["data"]["items"] == 24
    assert trained["training_seconds"] > 0
    listed = get_ok(client, "/v1/models", auth("editor"))
    assert listed["active_version"] == trained["version"]


def test_small_catalogues_are_scored_exactly(trained):
    assert trained["data"]["ann"] is None  # below ANN_MIN_ITEMS (200,000 by default)


def test_known_users_get_their_own_tribe_best_first(client, auth, trained):
    body = recs(client, auth, "ua3", "?n=5")
    assert body["strategy"] == "personalized" and body["model_version"] == trained["version"]
    assert len(body["items"]) == 5 and all(i.startswith("a") for i in ids(body))
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_purchased_unavailable_and_excluded_items_never_appear(client, auth, trained):
    h = auth("storefront")
    before = ids(recs(client, auth, "ua3", "?n=24"))
    purchased, unavailable, excluded = before[0], before[1], before[2]
    post_ok(client, "/v1/events", {"events": [{"event_id": "p1", "user_id": "ua3", "item_id": purchased, "type": "purchase", "value": 5}]}, h)
    post_ok(client, "/v1/items", {"items": [{"item_id": unavailable, "available": False}]}, h)
    after = ids(recs(client, auth, "ua3", f"?n=24&exclude={excluded},nonexistent"))
    assert not {purchased, unavailable, excluded} & set(after)
    assert unavailable not in ids(get_ok(client, "/v1/items/popular?n=24", h))
    assert unavailable not in ids(get_ok(client, f"/v1/items/{before[5]}/similar?n=24", h))


@pytest.mark.parametrize("user", ["ua3", "late-newcomer"], ids=["known to the model", "new since training"])
def test_an_item_bought_long_ago_never_appears_however_many_events_came_since(client, auth, trained, user):
    h = auth("storefront")
    bought = ids(recs(client, auth, "ua3", "?n=1"))[0]
    old = {"event_id": f"old-{user}", "user_id": user, "item_id": bought, "type": "purchase", "value": 5, "timestamp": "2020-01-01T00:00:00Z"}
    # More newer events than the 5,000 read for scoring a user (USER_EVENTS_LIMIT), on other items.
    newer = [{"event_id": f"new-{user}-{k}", "user_id": user, "item_id": f"a{k % 12}" if f"a{k % 12}" != bought else "b0",
              "type": "purchase", "value": 1, "timestamp": "2024-01-01T00:00:00Z"} for k in range(5_001)]
    post_ok(client, "/v1/events", {"events": [old, *newer]}, h)
    for query in ("?n=24", "?n=24&category=" + bought[0]):
        assert bought not in ids(recs(client, auth, user, query))


def test_category_filter(client, auth, trained):
    body = recs(client, auth, "ua3", "?category=b&n=4")
    assert len(body["items"]) == 4 and all(i.startswith("b") for i in ids(body))
    assert recs(client, auth, "ua3", "?category=none")["items"] == []


def test_unknown_user_without_events_gets_popular(client, auth, trained):
    body = recs(client, auth, "stranger", "?n=3")
    popular = get_ok(client, "/v1/items/popular?n=3", auth("storefront"))
    assert body["strategy"] == "popular"
    assert ids(body) == ids(popular)
    assert [i["score"] for i in popular["items"]] == sorted([i["score"] for i in popular["items"]], reverse=True)


def test_new_user_with_events_since_training_is_folded_in(client, auth, trained):
    h = auth("storefront")
    events = [{"event_id": f"n{i}", "user_id": "newcomer", "item_id": f"b{i}", "type": "click"} for i in range(3)]
    post_ok(client, "/v1/events", {"events": events}, h)
    body = recs(client, auth, "newcomer", "?n=5")
    assert body["strategy"] == "personalized"
    assert all(i.startswith("b") for i in ids(body))


def test_after_a_rollback_a_user_only_the_newer_model_knew_is_folded_in_from_all_their_events(client, auth, trained):
    h = auth("storefront")
    clicks = [{"event_id": f"k{i}", "user_id": "late", "item_id": f"b{i}", "type": "click"} for i in range(3)]
    post_ok(client, "/v1/events", {"events": clicks}, h)
    newer = train(client, auth("editor"))
    assert recs(client, auth, "late")["model_version"] == newer["version"]  # this worker now serves the newer model
    post_ok(client, f"/v1/models/{trained['version']}/activate", None, auth("editor"))
    # The older model never saw "late": the answer must fold in the clicks, not just the (absent) purchases.
    body = recs(client, auth, "late", "?n=5")
    assert body["model_version"] == trained["version"] and body["strategy"] == "personalized"
    assert all(i.startswith("b") for i in ids(body))


def test_popular_by_category(client, auth, trained):
    body = get_ok(client, "/v1/items/popular?n=5&category=a", auth("storefront"))
    assert len(body["items"]) == 5 and all(i.startswith("a") for i in ids(body))


def test_similar_items_come_from_the_same_tribe(client, auth, trained):
    body = get_ok(client, "/v1/items/a1/similar?n=5", auth("storefront"))
    assert body["item_id"] == "a1" and body["strategy"] == "similar"
    assert "a1" not in ids(body) and all(i.startswith("a") for i in ids(body))
    get_ok(client, "/v1/items/never-seen/similar", auth("storefront"), status=404)


def test_without_any_model_popular_comes_from_the_events(client, auth):
    two_tribes(client, auth("storefront"))
    body = recs(client, auth, "ua1", "?n=3")
    assert body["strategy"] == "popular" and body["model_version"] is None and len(body["items"]) == 3


def test_activation_and_rollback_switch_the_served_version(client, auth, trained):
    second = train(client, auth("editor"), {"algorithm": "item_knn", "activate": False})
    assert second["status"] == "ready" and second["active"] is False
    assert recs(client, auth, "ua1")["model_version"] == trained["version"]
    assert post_ok(client, f"/v1/models/{second['version']}/activate", None, auth("editor"))["active"] is True
    assert recs(client, auth, "ua1")["model_version"] == second["version"]
    post_ok(client, f"/v1/models/{trained['version']}/activate", None, auth("editor"))
    assert recs(client, auth, "ua1")["model_version"] == trained["version"]
    get_ok(client, "/v1/models/nope", auth("editor"), status=404)
    assert client.post("/v1/models/nope/activate", headers=auth("editor")).status_code == 404


def test_a_rollback_made_while_a_run_trains_is_not_undone_when_it_finishes(client, auth, db, config, trained):
    editor = auth("editor")
    older = train(client, editor, {"algorithm": "item_knn", "activate": False})
    # Recorded, not yet run: the run remembers which activation it would replace.
    waiting = request_training(db, config, "als", {"factors": 8, "iterations": 5}, activate=True)
    post_ok(client, f"/v1/models/{older['version']}/activate", None, editor)  # the PM's rollback
    run_training(db, config, waiting.version)
    finished = get_ok(client, f"/v1/models/{waiting.version}", editor)
    assert finished["status"] == "ready" and finished["active"] is False
    assert finished["data"]["activation"].startswith("not activated: another version was activated")
    assert recs(client, auth, "ua1")["model_version"] == older["version"]
    # Nothing came between this run's request and its end: it activates as asked. Activating the
    # version already served meanwhile (a client's retry) changes nothing, so it does not count.
    pending = request_training(db, config, "als", {"factors": 8, "iterations": 5}, activate=True)
    post_ok(client, f"/v1/models/{older['version']}/activate", None, editor)
    run_training(db, config, pending.version)
    again = get_ok(client, f"/v1/models/{pending.version}", editor)
    assert again["active"] is True and "activation" not in again["data"]
    assert recs(client, auth, "ua1")["model_version"] == again["version"]


def test_a_failed_training_leaves_the_active_model_serving(client, auth, trained):
    # Weighting every event type zero leaves nothing to learn from: the run fails after it started.
    nothing = {"matrix": {"weights": {"view": 0, "click": 0, "add_to_cart": 0, "purchase": 0}}}
    failed = train(client, auth("editor"), nothing)
    assert failed["status"] == "failed" and "no events" in failed["error"]
    assert failed["active"] is False
    assert recs(client, auth, "ua1")["model_version"] == trained["version"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"algorithm": "svd"}, "algorithm"),
        ({"params": {"factors": 0}}, "params"),
        ({"params": {"colour": "red"}}, "params"),
        ({"matrix": {"half_life_days": -1}}, "matrix"),
        ({"matrix": {"half_life_days": 5e-324}}, "matrix"),  # had trained a "ready" model on the last instant's events
        ({"matrix": {"half_life_days": 0.04}}, "matrix"),
        ({"params": {"half_life_days": 30}}, "params"),
        # JSON types are not coerced: each of these was accepted, or failed only once the run started.
        ({"evaluation": {"evaluate": "no"}}, "evaluation"),
        ({"evaluation": {"seed": -1}}, "evaluation"),
        ({"evaluation": {"test_fraction": "0.5"}}, "evaluation"),
        ({"evaluation": {"test_fraction": 0.8}}, "evaluation"),  # had served a model shrunk towards zero as "personalized"
        ({"evaluation": {"bogus": 1}}, "evaluation"),
        ({"matrix": {"weights": {"view": "1"}}}, "matrix"),
        ({"matrix": {"alpha": True}}, "matrix"),
        ({"matrix": {"half_life_days": True}}, "matrix"),
        ({"matrix": {"half_life_days": "7"}}, "matrix"),
        # The contract's bound on numbers: past it the run failed on NaN factors instead.
        ({"matrix": {"weights": {"view": 1e308}}}, "matrix"),
        ({"matrix": {"alpha": 1e13}}, "matrix"),
        ({"matrix": {"epsilon": 1e300}}, "matrix"),
        ({"matrix": {"epsilon": 5e-324}}, "matrix"),  # strength / epsilon overflowed: a "ready" model that served empty lists
        ({"params": {"factors": 64.5}}, "params"),
        ({"params": {"factors": True}}, "params"),
        ({"params": {"factors": "64"}}, "params"),
        ({"params": {"random_state": -1}}, "params"),
        ({"algorithm": "popularity", "params": {"refit_iterations": 1_000_000}}, "params"),
        ({"algorithm": "ease", "params": {"refit_iterations": 2}}, "params"),
        ({"algorithm": "item_knn", "tune": {"trials": 2, "space": {"refit_iterations": [1, 5]}}}, "tune.space"),
    ],
)
def test_bad_training_requests_are_422(client, auth, body, field):
    before = len(get_ok(client, "/v1/models", auth("editor"))["models"])
    resp = client.post("/v1/models", json=body, headers=auth("editor"))
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["details"][0]["field"] == field
    assert "not supported between" not in error["message"] and "__init__" not in error["message"]
    assert len(get_ok(client, "/v1/models", auth("editor"))["models"]) == before


@pytest.mark.parametrize(
    ("body", "field", "names"),
    [
        ({"algorithm": "popularity", "params": {"factors": 3}}, "params", "there are none"),
        ({"algorithm": "ease", "params": {"factors": 3}}, "params", "the settings are l2, dropout, session_weight, session_gap_minutes, max_items, min_coverage"),
        ({"algorithm": "item_knn", "tune": {"trials": 2, "space": {"factors": [1, 5]}}}, "tune.space.factors", "it has ['neighbours', 'similarity']"),
        ({"algorithm": "als", "params": {"l2": 3}}, "params", "refit_iterations"),
    ],
)
def test_an_unknown_setting_is_answered_with_the_settings_the_algorithm_takes(client, auth, body, field, names):
    # refit_iterations is a field of every model's settings but means something to als and bpr only.
    error = client.post("/v1/models", json=body, headers=auth("editor")).get_json()["error"]
    assert error["details"][0]["field"] == field and names in error["message"], error
    assert body["algorithm"] == "als" or "refit_iterations" not in error["message"]


@pytest.mark.parametrize("algorithm", ["bpr", "item_knn", "popularity"])
def test_every_algorithm_trains_and_serves(client, auth, algorithm):
    two_tribes(client, auth("storefront"))
    params = {"iterations": 200, "factors": 8, "learning_rate": 0.05} if algorithm == "bpr" else {}
    model = train(client, auth("editor"), {"algorithm": algorithm, "params": params})
    assert model["status"] == "ready", model
    body = recs(client, auth, "ua2", "?n=4")
    assert len(body["items"]) == 4
    if algorithm == "popularity":
        assert body["strategy"] == "popular"
    else:
        assert body["strategy"] == "personalized" and all(i.startswith("a") for i in ids(body))


@pytest.mark.parametrize("algorithm", ["item_knn", "ease"])
def test_an_item_item_model_never_answers_ties_at_zero_under_a_personal_label(client, auth, algorithm):
    # An item-item model scores 0 where it has no link: those items used to come back in catalogue
    # order, scored 0, as "personalized" or "similar", and item_knn put a shopper's own views first.
    shop = auth("storefront")
    two_tribes(client, shop)
    post_ok(client, "/v1/items", {"items": [{"item_id": "lonely", "title": "lonely", "category": "a", "available": True}]}, shop)
    post_ok(client, "/v1/events", {"events": [
        {"event_id": "lone-1", "user_id": "loner", "item_id": "lonely", "type": "view", "timestamp": "2026-11-01T10:00:00Z"},
        {"event_id": "one-1", "user_id": "one-view", "item_id": "a5", "type": "view", "timestamp": "2026-11-01T10:00:00Z"},
    ]}, shop)
    assert train(client, auth("editor"), {"algorithm": algorithm})["status"] == "ready"

    popular = {c: [i for i in ids(get_ok(client, f"/v1/items/popular?category={c}&n=20", shop)) if i != "lonely"] for c in "ab"}
    alone = get_ok(client, "/v1/items/lonely/similar?n=5", shop)
    assert alone["strategy"] == "popular" and ids(alone) == popular["a"][:5]  # the popular ones of its category
    assert recs(client, auth, "loner", "?n=5")["strategy"] == "popular"

    one = recs(client, auth, "one-view", "?n=5")
    assert one["strategy"] == "personalized" and ids(one)[0] != "a5" and all(i.startswith("a") for i in ids(one))

    # Beyond what the model links, the popular rest follows, scored below: n items, best first, no ties.
    mine, similar = recs(client, auth, "ua2", "?n=20"), get_ok(client, "/v1/items/a3/similar?n=20", shop)
    assert (mine["strategy"], similar["strategy"]) == ("personalized", "similar") and "a3" not in ids(similar)
    for body in (mine, similar):
        scores = [i["score"] for i in body["items"]]
        assert len(scores) == 20 and all(a > b for a, b in zip(scores, scores[1:])), body
        linked = [i.startswith("a") for i in ids(body)]
        assert linked == sorted(linked, reverse=True)  # the tribe's items, then the other tribe's
        unlinked = [i for i in ids(body) if i.startswith("b")]
        assert unlinked and unlinked == popular["b"][: len(unlinked)]
    # A similar list is topped up from the item's own category first: "lonely", in a3's category and linked to
    # nothing, before any b; a shopper's list by popularity alone, where "lonely", seen once, comes last.
    assert sorted(ids(similar)[:11]) == sorted(i for i in popular["a"] if i != "a3") and ids(similar)[11] == "lonely", ids(similar)
    assert "lonely" not in ids(mine)


def test_ease_lists_what_it_links_to_nothing_between_its_positive_and_negative_links(client, auth):
    # EASE predicts 0 for an item with no link and below 0 for a negative one: the unlinked belong between.
    shop = auth("storefront")
    baskets = [(range(0, 10), "ab"), (range(10, 20), "bc"), (range(20, 50), "xy")]
    events = [{"event_id": f"e{u}{i}", "user_id": f"u{u}", "item_id": i, "type": "view", "timestamp": "2026-11-01T10:00:00Z"}
              for users, items in baskets for u in users for i in items]
    events.append({"event_id": "q-a", "user_id": "q", "item_id": "a", "type": "view", "timestamp": "2026-11-01T10:00:00Z"})
    post_ok(client, "/v1/items", {"items": [{"item_id": i, "title": i, "available": True} for i in "abcxy"]}, shop)
    post_ok(client, "/v1/events", {"events": events}, shop)
    assert train(client, auth("editor"), {"algorithm": "ease", "params": {"l2": 1}, "evaluation": {"evaluate": False}})["status"] == "ready"
    for body in (recs(client, auth, "q", "?n=5"), get_ok(client, "/v1/items/a/similar?n=4", shop)):
        scores = {i["item_id"]: i["score"] for i in body["items"]}
        assert scores["b"] > 0 > scores["x"] > scores["y"] > scores["c"], body  # x and y: as popular, the earlier first
        assert [i["score"] for i in body["items"]] == sorted(scores.values(), reverse=True)
    assert ids(recs(client, auth, "q", "?n=5")) == ["b", "x", "y", "a", "c"]  # q's own view, unlinked to itself, by popularity


def test_every_change_of_the_served_model_is_logged_once_whoever_makes_it(client, auth, db, config, trained, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="service.usecases")
    editor = auth("editor")
    post_ok(client, f"/v1/models/{trained['version']}/activate", None, editor)  # already served: nothing changes, nothing logged
    run = request_training(db, config, "item_knn", {}, activate=True)
    run_training(db, config, run.version)
    lines = [(r.getMessage(), getattr(r, "by", None), getattr(r, "version", None)) for r in caplog.records if r.getMessage().startswith("model ")]
    assert lines == [("model activated", "training", run.version)]


def test_a_fit_shrunk_to_zero_fails_saying_so_rather_than_serving_zeros_as_personal(client, auth):
    # A regularization of 1e9 sends every factor to 0: every score 0, served in catalogue order.
    two_tribes(client, auth("storefront"))
    failed = train(client, auth("editor"), {"params": {"regularization": 1e9}})
    assert failed["status"] == "failed" and "shrank every factor to about zero" in failed["error"] and "lower regularization" in failed["error"]
    served = get_ok(client, "/v1/users/a0/recommendations", auth("storefront"))
    assert served["strategy"] == "popular"  # no model is active, so the live popular list answers


@pytest.mark.parametrize("algorithm", ["bpr", "als"])
def test_a_user_whose_events_have_all_faded_gets_popular_items_not_an_empty_personal_list(client, auth, algorithm):
    # Events some 150 half-lives old had kept confidences of exactly 0: BPR served such a user an empty
    # "personalized" list, ALS the catalogue in its order. 24 half-lives on (MIN_DECAY) they are left out.
    h = auth("storefront")
    two_tribes(client, h)  # dated 2026-11-01, dozens of one-day half-lives ago
    recent = iso(time.time() - 3600)
    fresh = [{"event_id": f"r-{u}-{i}", "user_id": f"ua{u}", "item_id": f"a{i}", "type": "purchase", "value": 1, "timestamp": recent}
             for u in range(20) for i in range(u % 6, u % 6 + 4)]
    post_ok(client, "/v1/events", {"events": fresh}, h)
    params = {"factors": 8, "iterations": 10, **({"regularization": 0.01} if algorithm == "als" else {})}
    model = train(client, auth("editor"), {"algorithm": algorithm, "matrix": {"half_life_days": 1}, "params": params})
    assert model["status"] == "ready", model
    assert model["data"]["users"] == 20
    faded = recs(client, auth, "ub1")
    assert faded["strategy"] == "popular" and ids(faded)[:3] == ["a3", "a4", "a5"]  # the most bought of the last day
    assert recs(client, auth, "ua1")["strategy"] == "personalized"
