"""Every error status in the contract's shape; bad input changes nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.store.tables import EventRow


def assert_error(resp, status, code=None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def count_events(db):
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(EventRow))


def event(i, **over):
    return {"event_id": f"e-{i}", "user_id": "u1", "item_id": "sku-1", "type": "view", "timestamp": "2026-11-22T10:00:00Z", **over}


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"events": [}', b"\xff\xfe"])
def test_malformed_json_is_400(client, auth, body):
    resp = client.post("/v1/events", data=body, headers={**auth("storefront"), "Content-Type": "application/json"})
    assert_error(resp, 400, "bad_request")


def test_missing_body_is_400(client, auth):
    assert_error(client.post("/v1/events", headers=auth("storefront")), 400)


def test_unknown_resource_is_404(client, auth):
    assert_error(client.get("/v1/items/nope", headers=auth("storefront")), 404, "not_found")
    assert_error(client.get("/v1/nowhere", headers=auth("storefront")), 404, "not_found")


def test_wrong_method_is_405(client, auth):
    resp = client.delete("/v1/events", headers=auth("storefront"))
    assert_error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]


def test_reading_a_model_action_is_405_not_a_version_named_after_it(client, auth):
    # A model version never holds a '/', so `1/activate` is the action's path with the wrong method.
    for action in ("activate", "cancel"):
        resp = client.get(f"/v1/models/1/{action}", headers=auth("editor"))
        assert_error(resp, 405, "method_not_allowed")
        assert resp.headers["Allow"] == "POST, OPTIONS"
    assert_error(client.get("/v1/models/a%2Fb", headers=auth("editor")), 404, "not_found")


def test_allow_lists_methods_in_one_order_whatever_order_they_come_in():
    # werkzeug's own order followed the process's string hashing: the header changed between restarts.
    from service.http.errors import allow_header

    for methods in (["OPTIONS", "POST", "GET", "HEAD"], ["HEAD", "GET", "OPTIONS", "POST"], {"POST", "OPTIONS", "HEAD", "GET"}):
        assert allow_header(methods) == "GET, HEAD, POST, OPTIONS"
    assert allow_header(["options", "PROPFIND", "get", "LOCK"]) == "GET, OPTIONS, LOCK, PROPFIND"


def test_options_answers_the_methods_with_no_body(client):
    # Flask's own answer was a 200 with an empty text/html body.
    # In one order, as the reference lists them: werkzeug's own followed the process's string hashing.
    for path, methods in (("/v1/events", "POST, OPTIONS"), ("/v1/experiments/x/assignment", "GET, OPTIONS"), ("/v1/items/popular", "GET, HEAD, OPTIONS")):
        resp = client.open(path, method="OPTIONS")
        assert resp.status_code == 204 and resp.data == b"" and "Content-Type" not in resp.headers
        assert resp.headers["Allow"] == methods


def test_activating_a_model_that_is_not_ready_is_409(client, auth, db):
    import time

    from service.store.tables import ModelVersionRow

    with db.write() as session:
        session.add(ModelVersionRow(version="v-broken", status="failed", algorithm="als", params={}, metrics={}, data={}, created_at=time.time()))
    assert_error(client.post("/v1/models/v-broken/activate", headers=auth("editor")), 409, "conflict")


def test_batch_over_10000_is_413_and_stores_nothing(client, auth, db):
    batch = {"events": [event(i) for i in range(10_001)]}
    assert_error(client.post("/v1/events", json=batch, headers=auth("storefront")), 413)
    assert count_events(db) == 0


def test_body_over_the_limit_is_413(client, auth, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    resp = client.post("/v1/events", json={"events": [event(i) for i in range(50)]}, headers=auth("storefront"))
    assert_error(resp, 413)


def test_validation_names_each_bad_field_with_its_index_and_stores_nothing(client, auth, db):
    batch = {
        "events": [
            event(0),
            event(1, type="like"),
            event(2, timestamp="2026-11-22T10:00:00"),  # no zone
            event(3, user_id=""),
            event(4, value="12"),  # a string is not a number here
        ]
    }
    err = assert_error(client.post("/v1/events", json=batch, headers=auth("storefront")), 422, "validation_error")
    named = {(d["index"], d["field"]) for d in err["details"]}
    assert {(1, "events.1.type"), (2, "events.2.timestamp"), (3, "events.3.user_id"), (4, "events.4.value")} <= named
    assert count_events(db) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/u1/recommendations?n=0",
        "/v1/users/u1/recommendations?n=101",
        "/v1/users/u1/recommendations?n=ten",
        "/v1/items/popular?n=-1",
    ],
)
def test_bad_query_parameters_are_422(client, auth, path):
    err = assert_error(client.get(path, headers=auth("storefront")), 422)
    assert err["details"][0]["field"].startswith("query.")


def test_overlong_id_in_path_is_422(client, auth):
    assert_error(client.get("/v1/items/" + "x" * 129, headers=auth("storefront")), 422)


def test_unknown_fields_are_refused(client, auth):
    err = assert_error(client.post("/v1/events", json={"events": [event(0, colour="red")]}, headers=auth("storefront")), 422)
    assert err["details"][0]["field"] == "events.0.colour"


def test_unexpected_exception_is_500_without_internals(app, auth, caplog):
    def boom():
        raise RuntimeError("secret connection string postgres://u:p@h")

    app.add_url_rule("/v1/boom", "boom", boom)
    resp = app.test_client().get("/v1/boom", headers={"X-Request-ID": "req-500"})
    err = assert_error(resp, 500, "internal_error")
    assert "secret" not in resp.get_data(as_text=True)
    assert err["request_id"] == "req-500"
    assert any(getattr(r, "request_id", None) == "req-500" for r in caplog.records)


@pytest.mark.parametrize(
    "answer",
    [
        {"model_version": None, "items": [{"item_id": "a", "score": 1.0, "extra": 1}]},
        {"model_version": None, "items": [{"item_id": "a", "score": "high"}]},
        {"items": [{"item_id": "a", "score": 1.0}], "model_version": None},
        {"items": []},
    ],
)
def test_a_plain_answer_that_strays_from_its_declared_model_fails_under_test(app, answer):
    from service.http.endpoint import endpoint
    from service.http.schemas.catalogue import PopularItems

    exact = {"model_version": "v1", "items": [{"item_id": "a", "score": 0.5}]}
    app.add_url_rule("/v1/exact", "exact", endpoint("x", roles=None, tag="system", response=PopularItems)(lambda: exact))
    app.add_url_rule("/v1/stray", "stray", endpoint("x", roles=None, tag="system", response=PopularItems)(lambda: answer))
    client = app.test_client()
    assert client.get("/v1/exact").get_json() == exact
    assert_error(client.get("/v1/stray"), 500, "internal_error")


def test_nul_characters_are_refused_not_stored(client, auth, db):
    resp = client.post("/v1/events", json={"events": [event(0, user_id="a\x00b")]}, headers=auth("storefront"))
    assert_error(resp, 422)
    assert_error(client.get("/v1/users/a%00b/recommendations", headers=auth("storefront")), 422)
    assert count_events(db) == 0
