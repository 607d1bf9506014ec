"""Hostile input: each case answers a clear 4xx (or 503) in the error shape and stores nothing."""
from __future__ import annotations

import csv
import http.client
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from sqlalchemy import func, select

from experiments.stats.power import users_per_arm_mean, users_per_arm_proportion
from experiments.stats.srm import sample_ratio_mismatch
from service.config import Config
from service.http.app import create_app
from service.http.spec import plain_rule
from service.http.schemas.catalogue import MAX_EXCLUDE_BYTES
from service.store.tables import Base, EventRow
from service.timestamps import latest, window_error
from tests.experiment_helpers import ab_definition, assign, bandit_definition, running
from tests.helpers import get_ok, post_ok
from tests.server import free_port, gunicorn

ROOT = Path(__file__).resolve().parents[2]
FAR_TIMESTAMPS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
CLOSED_PORT_URL = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"


def stored(db) -> dict[str, int]:
    """Rows per table: what a refused request must leave as it was."""
    with db.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in Base.metadata.sorted_tables}


def refused(resp, status: int = 422, field: str | None = None) -> dict[str, Any]:
    """Insist on an error answer in the contract's shape, naming `field` when given."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert set(error) >= {"code", "message", "details"} and isinstance(error["message"], str)
    if field is not None:
        assert any(d["field"].endswith(field) for d in error["details"]), error
    return error


def numbers(value: Any) -> list[float]:
    """Every number inside a JSON value."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    items = value.values() if isinstance(value, dict) else value
    return [n for item in items for n in numbers(item)]


def multiplier_definition(key: str, start: str, end: str) -> dict[str, Any]:
    """An A/B test whose control doubles points in [start, end)."""
    body = ab_definition(key=key)
    body["arms"][0]["schedule"] = {"type": "per_unit", "points_per_unit": 1, "multiplier": {"factor": 2, "start": start, "end": end}}
    return body


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize("moment, said", [("2016-12-31T23:59:60Z", "leap second"), ("2026-11-22T24:00:00Z", "24:00"), ("2026-11-22T24:00Z", "24:00")])
def test_iso_times_no_datetime_holds_are_422_saying_what_to_send(client, auth, db, moment, said):
    before = stored(db)
    event = {"event_id": "e-odd", "user_id": "u1", "item_id": "i1", "type": "view", "timestamp": moment}
    error = refused(client.post("/v1/events", json={"events": [event]}, headers=auth("storefront")), 422, "events.0.timestamp")
    assert said in error["message"] and "unexpected" not in error["message"]
    assert stored(db) == before


def test_an_offset_of_whole_hours_written_without_minutes_is_read_as_iso_8601_writes_it(client, auth, db):
    # "+02" is ISO 8601 (and PostgreSQL's own output); the parser had refused it as "unexpected extra characters".
    shop = auth("storefront")
    sent = {"2026-11-22T11:00:00+02": 1795338000.0, "2026-11-22T04:00:00.5-05": 1795338000.5, "2026-11-22 09:00+00": 1795338000.0,
            "2026-11-22T09:00:00,5Z": 1795338000.5, "2026-11-22 11:00:00,25+0200": 1795338000.25}
    for i, moment in enumerate(sent):
        post_ok(client, "/v1/events", {"events": [{"event_id": f"e-hour-{i}", "user_id": "u1", "item_id": "i1", "type": "view", "timestamp": moment}]}, shop)
    with db.read() as session:
        stored_at = dict(session.execute(select(EventRow.event_id, EventRow.ts)).all())
    assert [stored_at[f"e-hour-{i}"] for i in range(len(sent))] == list(sent.values())
    # Forms of ISO 8601 it does not read are named as such, with an example of one it does.
    for moment in ("20261122T100000Z", "2026-11-22T10Z", "2026-W47-7T10:00:00Z", "2026-11-22T10:00:00+2"):
        error = refused(client.post("/v1/events", json={"events": [{"event_id": "e-odd", "user_id": "u", "item_id": "i", "type": "view", "timestamp": moment}]}, headers=shop), 422, "events.0.timestamp")
        assert "extended form" in error["message"], (moment, error)


@pytest.mark.parametrize("far", FAR_TIMESTAMPS)
def test_timestamps_outside_the_window_are_422_and_store_nothing(client, auth, db, far):
    shop, editor = auth("storefront"), auth("editor")
    running(client, editor, ab_definition())
    before = stored(db)
    attempts = [
        ("query.timestamp", client.get("/v1/experiments/points-q4/assignment", query_string={"user_id": "u-far", "timestamp": far}, headers=shop)),
        ("timestamp", client.post("/v1/assignments", json={"user_id": "u-far", "experiments": ["points-q4"], "timestamp": far}, headers=shop)),
        ("timestamp", client.post("/v1/rewards", json={"action_id": "a-far", "user_id": "u-far", "experiment": "points-q4", "value": 5, "timestamp": far}, headers=shop)),
        ("events.0.timestamp", client.post("/v1/events", json={"events": [{"event_id": "e-far", "user_id": "u-far", "item_id": "i", "type": "view", "timestamp": far}]}, headers=shop)),
        ("outcomes.0.timestamp", client.post("/v1/outcomes", json={"outcomes": [{"outcome_id": "o-far", "experiment": "points-q4", "user_id": "u-far", "metric": "conversion", "timestamp": far}]}, headers=shop)),
        ("multiplier.start", client.post("/v1/experiments", json=multiplier_definition("far-start", far, "2030-01-01T00:00:00Z"), headers=editor)),
        ("multiplier.end", client.post("/v1/experiments", json=multiplier_definition("far-end", "2026-01-01T00:00:00Z", far), headers=editor)),
    ]
    for field, resp in attempts:
        error = refused(resp, 422, field)
        assert "2000-01-01" in error["message"] or "100 years" in error["message"]
    assert stored(db) == before
    assert assign(client, shop, "points-q4", "u-far")["enrolled"] is True
    get_ok(client, "/v1/experiments/points-q4/results/daily", auth("analyst"))


def test_the_assignment_query_timestamp_is_parsed_from_text_into_the_same_window(client, auth, db):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    before = stored(db)
    for text in ("1999-12-31T23:59:59Z", "2026-11-22T10:00:00", "yesterday", "1700000000"):
        refused(client.get("/v1/experiments/points-q4/assignment", query_string={"user_id": "u1", "timestamp": text}, headers=shop), 422, "query.timestamp")
    assert stored(db) == before
    assert assign(client, shop, "points-q4", "u1", timestamp="2000-01-01T00:00:00Z")["exposed_at"] == "2000-01-01T00:00:00Z"


@pytest.mark.parametrize("epoch", ["1700000000", 1700000000, 1700000000.5])
def test_epoch_seconds_are_not_a_timestamp(client, auth, db, epoch):
    before = stored(db)
    event = {"event_id": "e-epoch", "user_id": "u", "item_id": "i", "type": "view", "timestamp": epoch}
    assert "ISO 8601" in refused(client.post("/v1/events", json={"events": [event]}, headers=auth("storefront")), 422, "events.0.timestamp")["message"]
    assert stored(db) == before


@pytest.mark.parametrize("now, last", [
    ("2026-12-05T03:33:00Z", "2126-12-05T03:33:00Z"),
    ("2000-02-29T12:00:00Z", "2100-02-28T12:00:00Z"),  # 2100 is no leap year
    ("2024-02-29T00:00:00Z", "2124-02-29T00:00:00Z"),
])
def test_the_window_ends_100_calendar_years_after_now(now, last):
    at = datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    assert latest(at) == datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp()
    assert window_error(latest(at), at) is None and window_error(latest(at) + 1, at) is not None


# --- numbers ---------------------------------------------------------------------------------


def test_numbers_beyond_1e12_are_422_at_the_door(client, auth, db):
    shop, editor = auth("storefront"), auth("editor")
    running(client, editor, ab_definition())
    assign(client, shop, "points-q4", "u1")
    before = stored(db)
    huge = {"outcomes": [{"outcome_id": "o-huge", "experiment": "points-q4", "user_id": "u1", "metric": "spend", "value": 1e200}]}
    refused(client.post("/v1/outcomes", json=huge, headers=shop), 422, "outcomes.0.value")
    per_unit = ab_definition(key="rich")
    per_unit["arms"][0]["schedule"] = {"type": "per_unit", "points_per_unit": 1e300}
    refused(client.post("/v1/experiments", json=per_unit, headers=editor), 422, "points_per_unit")
    heavy = ab_definition(key="heavy")
    heavy["arms"][0]["weight"] = 1e308
    refused(client.post("/v1/experiments", json=heavy, headers=editor), 422, "arms.0.weight")
    assert stored(db) == before


def test_an_integer_beyond_the_parsers_4300_digits_is_valid_json_out_of_bounds(client, auth, db):
    """RFC 8259 lets a parser bound its numbers: such a body is JSON (not a 400) whose number no field takes (422)."""
    before = stored(db)
    for digits in (4300, 4301, 10_000):
        body = b'{"events": [{"event_id": "e1", "user_id": "u", "item_id": "i", "type": "purchase", "value": 1' + b"0" * digits + b"}]}"
        resp = client.post("/v1/events", data=body, content_type="application/json", headers=auth("storefront"))
        error = refused(resp, 422)
        assert error["code"] == "validation_error" and error["details"][0]["field"] in ("events.0.value", "body"), error
    assert stored(db) == before


def test_a_model_version_in_a_path_is_read_with_its_escapes_undone(client, auth):
    """As every id in a path: `%2F` is a '/' of the id, `%25` a '%'."""
    for escaped, named in (("nope%2Fy", "nope/y"), ("nope%25y", "nope%y"), ("n%C3%A9", "n\u00e9")):
        error = refused(client.get(f"/v1/models/{escaped}", headers=auth("editor")), 404)
        assert f"model version {named!r} does not exist" in error["message"], error
        refused(client.post(f"/v1/models/{escaped}/activate", headers=auth("editor")), 404)
    # A NUL is named as what is wrong, not the length: "must match 1..128 characters" of a 30-character id misled.
    nul = refused(client.post("/v1/models/20261207T101010Z-abcdef%00/activate", headers=auth("editor")), 422)
    assert nul["details"][0]["message"] == "must be 1 to 128 characters, none of them NUL", nul


def test_an_encoded_body_is_a_415_and_stores_nothing(client, auth, db):
    # Read as it came, a gzip body was answered as malformed JSON, and a plain one labelled gzip obeyed.
    import gzip

    shop = auth("storefront")
    before = stored(db)
    body = json.dumps({"events": [{"event_id": "gz-1", "user_id": "u1", "item_id": "i1", "type": "view"}]}).encode()
    for data, encoding in ((gzip.compress(body), "gzip"), (body, "gzip"), (body, "br")):
        resp = client.post("/v1/events", data=data, headers={**shop, "Content-Type": "application/json", "Content-Encoding": encoding})
        assert encoding in refused(resp, 415)["message"]
    assert stored(db) == before
    assert client.post("/v1/events", data=body, headers={**shop, "Content-Type": "application/json", "Content-Encoding": "identity"}).status_code == 200


def test_attributes_and_payloads_hold_at_most_ten_thousand_values(client, auth, db):
    # 16 million zeros in one item's attributes (a 32 MB body) had cost a worker a gigabyte, and each read
    # 50 MB; a million empty arrays cost more than a million zeros, so arrays and objects count too.
    shop = auth("storefront")
    before = stored(db)
    for attributes in ({"tags": [0] * 9_997, "more": {"a": 1, "b": 2}}, {"hollow": [[]] * 100_000}, {"hollow": [{}] * 10_000}):
        resp = client.post("/v1/items", json={"items": [{"item_id": "bulky", "attributes": attributes}]}, headers=shop)
        assert "more than 10,000 values" in refused(resp, 422, "items.0.attributes")["message"]
    assert stored(db) == before
    arm = ab_definition(key="bulky-arm")
    arm["arms"][0]["payload"] = {"weights": [0.5] * 10_000}
    refused(client.post("/v1/experiments", json=arm, headers=auth("editor")), 422, "arms.0.payload")
    # 10,000 values, the list and the object among them: stored.
    post_ok(client, "/v1/items", {"items": [{"item_id": "bulky", "attributes": {"tags": [0] * 9_997, "more": {"a": 1}}}]}, shop)
    # Targeting rules have bounds of their own (100 conditions, 1,000 values in a list), not this one.
    rule = {"any": [{"attribute": f"a{j}", "op": "in", "value": [f"v{k}" for k in range(1_000)]} for j in range(11)]}
    post_ok(client, "/v1/experiments", ab_definition(key="wide-rule", targeting=rule), auth("editor"), status=201)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinity_inside_free_form_json_are_refused_not_stored_as_null(client, auth, db, literal):
    """NaN and Infinity are not JSON (a 400, as any malformed body); 1e400 is, but no double holds it (a 422)."""
    editor, shop = auth("editor"), auth("storefront")
    before = stored(db)
    item = '{"items": [{"item_id": "nan-item", "attributes": {"size": [1, {"depth": %s}]}}]}' % literal
    resp = client.post("/v1/items", data=item, headers={**shop, "Content-Type": "application/json"})
    if literal == "1e400":
        refused(resp, 422, "items.0.attributes")
    else:
        assert refused(resp, 400)["code"] == "bad_request"
    arm = json.dumps(ab_definition(key="nan-arm")).replace('"payload": {', '"payload": {"bonus": %s, ' % literal, 1)
    resp = client.post("/v1/experiments", data=arm, headers={**editor, "Content-Type": "application/json"})
    if literal == "1e400":
        refused(resp, 422, "arms.0.payload")
    else:
        assert refused(resp, 400)["code"] == "bad_request"
    event = '{"events": [{"event_id": "e-nan", "user_id": "u1", "item_id": "sku-1", "type": "purchase", "value": %s}]}' % literal
    resp = client.post("/v1/events", data=event, headers={**shop, "Content-Type": "application/json"})
    assert resp.status_code == (422 if literal == "1e400" else 400)
    assert stored(db) == before
    assert client.get("/v1/items/nan-item", headers=shop).status_code == 404


def test_outcomes_at_the_1e12_bound_keep_results_finite(client, auth):
    shop, analyst = auth("storefront"), auth("analyst")
    running(client, auth("editor"), ab_definition())
    for i in range(12):
        assign(client, shop, "points-q4", f"u{i}")
    outcomes = [{"outcome_id": f"big-{i}", "experiment": "points-q4", "user_id": "u0", "metric": "spend", "value": 1e12} for i in range(2)]
    outcomes += [{"outcome_id": f"s-{i}", "experiment": "points-q4", "user_id": f"u{i}", "metric": "spend", "value": 1e12 - i} for i in range(1, 12)]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    body = get_ok(client, "/v1/experiments/points-q4/results?metric=spend&mde=1", analyst)
    assert sum(arm["total"] for arm in body["arms"]) == pytest.approx(2e12 + sum(1e12 - i for i in range(1, 12)))
    assert all(math.isfinite(n) for n in numbers(body))
    resp = client.get("/v1/experiments/points-q4/results.csv?metric=spend", headers=analyst)
    assert resp.status_code == 200
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    cells = [cell for row in rows for name, cell in row.items() if name not in ("experiment", "metric", "metric_kind", "test", "correction", "arm", "notes")]
    assert all(math.isfinite(float(cell)) for cell in cells if cell not in ("", "true", "false"))


@pytest.fixture
def sized(client, auth):
    """A running test whose control has both converters and non-converters, and spread-out spend."""
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    arms = {f"u{i}": assign(client, shop, "points-q4", f"u{i}")["arm"] for i in range(40)}
    control = [u for u, arm in arms.items() if arm == "control"]
    assert len(control) >= 3
    outcomes = [{"outcome_id": f"c-{u}", "experiment": "points-q4", "user_id": u, "metric": "conversion"} for u in control[:2]]
    outcomes += [{"outcome_id": f"s-{u}", "experiment": "points-q4", "user_id": u, "metric": "spend", "value": float(i)} for i, u in enumerate(arms)]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    return auth("analyst")


@pytest.mark.parametrize("metric", ["conversion", "spend"])
@pytest.mark.parametrize("query", ["mde=1e-300", "mde=0.01&power=1e-40", "mde=5e-324", "mde=1e-9&alpha=1e-12"])
def test_impossible_sample_sizes_are_a_note_not_a_500(client, sized, metric, query):
    body = get_ok(client, f"/v1/experiments/points-q4/results?metric={metric}&{query}", sized)
    assert body["sample_size"]["users_per_arm"] is None and body["sample_size"]["note"].startswith("cannot size yet")


def test_sample_size_and_level_bounds(client, sized):
    assert get_ok(client, "/v1/experiments/points-q4/results?metric=spend&mde=1", sized)["sample_size"]["users_per_arm"] > 0
    for metric in ("conversion", "spend"):
        body = get_ok(client, f"/v1/experiments/points-q4/results?metric={metric}&alpha=1e-12", sized)
        assert all(isinstance(n, float) and math.isfinite(n) for arm in body["arms"][1:] for n in arm["diff_ci"] + arm["ci"])
    for query in ("mde=1e13", "mde=0", "mde=-1", "mde=nan", "mde=inf", "power=1", "power=0", "alpha=5e-324", "alpha=1e-13"):
        refused(client.get(f"/v1/experiments/points-q4/results?{query}", headers=sized), 422, "query." + query.partition("=")[0])


def test_sample_size_functions_refuse_what_they_cannot_answer():
    assert users_per_arm_proportion(0.10, 0.02) == 3841
    for call in (
        lambda: users_per_arm_proportion(0.2, 1e-300),
        lambda: users_per_arm_proportion(0.2, 0.01, power=1e-40),
        lambda: users_per_arm_proportion(0.2, 0.01, alpha=5e-324),
        lambda: users_per_arm_mean(1e12, 1e-300),
        lambda: users_per_arm_mean(1.0, 0.01, power=0.01),
    ):
        with pytest.raises(ValueError, match="power must exceed|too small to detect"):
            call()


def test_srm_expected_counts_are_always_numbers(client, auth):
    running(client, auth("editor"), ab_definition(weights=(1e12, 5e-324, 1e12)))
    for i in range(20):
        assign(client, auth("storefront"), "points-q4", f"u{i}")
    srm = get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["srm"]
    assert srm["observed"][1] == 0 and srm["expected"][1] == 0.0
    assert all(isinstance(e, float) and math.isfinite(e) for e in srm["expected"]) and math.isfinite(srm["statistic"])
    for weights in ([1e308, 1e308], [5e-324, 5e-324], [1e12, 5e-324]):
        result = sample_ratio_mismatch([7, 0], weights)
        assert result is not None and all(math.isfinite(e) for e in result.expected)
    assert sample_ratio_mismatch([7, 1], [1e12, 5e-324]).mismatch  # an arm expected to get no one got someone


# --- resources, patches and parameters -------------------------------------------------------


def test_a_key_id_beyond_64_bits_is_404(client, auth, db):
    before = stored(db)
    refused(client.delete("/v1/keys/1180591620717411303424", headers=auth("admin")), 404)
    assert stored(db) == before


@pytest.mark.parametrize("digits", ["%C2%B2", "%D9%A3", "%EF%BC%91"], ids=["superscript two", "arabic-indic three", "fullwidth one"])
def test_a_key_id_in_another_scripts_digits_revokes_nothing(client, auth, keys, digits):
    listed = client.get("/v1/keys", headers=auth("admin")).get_json()
    refused(client.delete(f"/v1/keys/{digits}", headers=auth("admin")), 404)
    assert client.get("/v1/keys", headers=auth("admin")).get_json() == listed


def test_an_id_of_129_characters_is_422_even_ending_in_a_newline(client, auth, db):
    before = stored(db)
    for path in ("/v1/users/" + "u" * 128 + "%0A/recommendations?experiment=points-q4", "/v1/experiments/points-q4%0A/assignment?user_id=u1"):
        refused(client.get(path, headers=auth("storefront")), 422)
    assert stored(db) == before


def test_doubled_slashes_are_not_redirected_to_another_resource(client, auth):
    for path in ("/v1/users//victim/recommendations", "/v1//items/popular"):
        answer = client.get(path, headers=auth("storefront"))
        assert answer.status_code == 404 and "Location" not in answer.headers and answer.get_json()["error"]["code"] == "not_found"



def test_an_id_holding_a_slash_is_named_in_a_path_as_it_is_or_escaped(client, auth):
    """Storefronts use ids like sku/9: every path that takes an id reaches them, with `/` or `%2F`."""
    shop = auth("storefront")
    post_ok(client, "/v1/items", {"items": [{"item_id": "sku/9", "category": "c"}, {"item_id": "sku/10", "category": "c"}]}, shop)
    event = {"event_id": "e/1", "user_id": "shop/7", "item_id": "sku/9", "type": "purchase", "timestamp": "2026-11-22T10:00:00Z"}
    post_ok(client, "/v1/events", {"events": [event, {**event, "event_id": "e/2", "user_id": "shop/8", "item_id": "sku/10", "type": "view"}]}, shop)
    for path in ("/v1/items/sku/9", "/v1/items/sku%2F9"):
        assert get_ok(client, path, shop)["item_id"] == "sku/9"
    for path in ("/v1/users/shop/7/recommendations", "/v1/users/shop%2F7/recommendations"):
        answer = get_ok(client, path, shop)
        assert answer["user_id"] == "shop/7" and [i["item_id"] for i in answer["items"]] == ["sku/10"]  # sku/9 was bought
    for path in ("/v1/items/sku/9/similar", "/v1/items/sku%2F9/similar"):
        answer = get_ok(client, path, shop)
        assert answer["item_id"] == "sku/9" and [i["item_id"] for i in answer["items"]] == ["sku/10"]
    running(client, auth("editor"), ab_definition())
    arm = assign(client, shop, "points-q4", "shop/7")["arm"]
    for path in ("/v1/experiments/points-q4/users/shop/7/rewards", "/v1/experiments/points-q4/users/shop%2F7/rewards"):
        assert get_ok(client, path, shop)["arm"] == arm
    # A leading slash stays out of reach rather than naming the user without it.
    refused(client.get("/v1/users//shop/7/recommendations", headers=shop), 404)


@pytest.mark.parametrize("environ, routed", [
    ({"RAW_URI": "/v1/items/x%2Fsimilar", "PATH_INFO": "/v1/items/x/similar"}, "/v1/items/x%2Fsimilar"),
    ({"RAW_URI": "http://localhost/v1/items/x%2fsimilar?a=1", "PATH_INFO": "/v1/items/x/similar"}, "/v1/items/x%2fsimilar"),  # absolute form
    ({"RAW_URI": "/v1/items/popular#x", "PATH_INFO": "/v1/items/popular"}, "/v1/items/popular"),  # a fragment is not the path
    ({"RAW_URI": "/app/v1/items/x%2Fs", "SCRIPT_NAME": "/app", "PATH_INFO": "/v1/items/x/s"}, "/v1/items/x%2Fs"),
    ({"RAW_URI": "/v1/items/x%2Fs", "SCRIPT_NAME": "/v", "PATH_INFO": "/v1/items/x/s"}, "/v1/items/x/s"),  # a proxy's prefix that does not match: as decoded
    ({"REQUEST_URI": "/v1/items/%2Flead", "PATH_INFO": "/v1/items//lead"}, "/v1/items/%2Flead"),  # uWSGI, mod_wsgi
    ({"PATH_INFO": "/v1/items/100%"}, "/v1/items/100%25"),  # no target as sent: '%' escaped, so that the id reads back as it was
    ({"RAW_URI": "*", "PATH_INFO": "*"}, "*"),
])
def test_the_path_is_routed_as_sent_only_where_it_is_the_path_the_server_decoded(environ, routed):
    from service.http.paths import KeepEscapedSlashes

    seen: dict[str, Any] = {}
    KeepEscapedSlashes(lambda env, start: seen.update(env) or [])(dict(environ), None)
    assert seen["PATH_INFO"] == routed


def test_every_id_the_api_stores_is_read_back_through_its_escaped_path(client, auth, config, keys):
    """Ids a bare '/' cannot name (`x/similar` against item x's similar items, a leading '/'), and a '%' of the id's own."""
    shop = auth("storefront")
    ids = ["x/similar", "x", "/lead", "100%", "a%2Fb", "/"]
    post_ok(client, "/v1/items", {"items": [{"item_id": i, "title": f"title of {i}"} for i in ids]}, shop)
    post_ok(client, "/v1/events", {"events": [{"event_id": f"e{k}", "user_id": i, "item_id": "x", "type": "view"} for k, i in enumerate(ids)]}, shop)
    for item in ids:
        assert get_ok(client, f"/v1/items/{quote(item, safe='')}", shop)["title"] == f"title of {item}"
        assert get_ok(client, f"/v1/users/{quote(item, safe='')}/recommendations", shop)["user_id"] == item
    assert get_ok(client, "/v1/items/x/similar", shop)["item_id"] == "x"  # a bare '/' still reads as the path's own
    # The same through gunicorn, which decodes the path before the app sees it.
    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}
    with gunicorn(env, workers=1) as server:
        for item in ids:
            status, body = server.request("GET", f"/v1/items/{quote(item, safe='')}", key=keys["storefront"])
            assert (status, body["item_id"]) == (200, item)

@pytest.mark.parametrize("field", ["traffic", "name", "description", "arms", "metrics"])
def test_patching_a_field_to_null_is_422_naming_it(client, auth, field):
    editor = auth("editor")
    created = post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    error = refused(client.patch("/v1/experiments/points-q4", json={field: None}, headers=editor), 422, field)
    assert error["message"].startswith(field)
    assert get_ok(client, "/v1/experiments/points-q4", editor)["updated_at"] == created["updated_at"]


def test_a_patch_that_changes_nothing_leaves_the_revision_as_it_was(client, auth):
    """The revision is what a client compares to see whether an experiment changed: a no-op must not move it."""
    editor = auth("editor")
    created = post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    # The analysis settings and guardrails as GET shows them, defaults filled in, are what is stored too.
    for change in ({}, {"bandit": None}, {"traffic": created["traffic"]}, {"name": created["name"]}, {"analysis": created["analysis"]},
                   {"guardrails": []}, {"analysis": {}}):
        resp = client.patch("/v1/experiments/points-q4", json=change, headers=editor)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert (resp.get_json()["revision"], resp.get_json()["updated_at"]) == (created["revision"], created["updated_at"]), change
    moved = client.patch("/v1/experiments/points-q4", json={"traffic": 0.5}, headers=editor).get_json()
    assert moved["revision"] == created["revision"] + 1
    assert client.patch("/v1/experiments/points-q4", json={"traffic": 0.5}, headers=editor).get_json()["revision"] == moved["revision"]


def test_patching_bandit_to_null_drops_it(client, auth):
    editor = auth("editor")
    post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    resp = client.patch("/v1/experiments/points-q4", json={"bandit": None}, headers=editor)
    assert resp.status_code == 200 and resp.get_json()["bandit"] is None


def test_unknown_query_parameters_are_422(client, auth):
    running(client, auth("editor"), ab_definition())
    refused(client.get("/v1/items/popular?colour=red", headers=auth("storefront")), 422, "query.colour")
    refused(client.get("/v1/experiments/points-q4/results?foo=1", headers=auth("analyst")), 422, "query.foo")
    # Endpoints that take no query parameters refuse any, and do nothing.
    refused(client.get("/v1/experiments/points-q4?foo=1", headers=auth("analyst")), 422, "query.foo")
    refused(client.post("/v1/experiments/points-q4/pause?foo=1&bar=2", headers=auth("editor")), 422, "query.foo")
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst"))["status"] == "running"
    refused(client.post("/v1/events?dry_run=1", json={"events": [{"event_id": "q1", "user_id": "u", "item_id": "i", "type": "view"}]}, headers=auth("storefront")), 422, "query.dry_run")
    assert client.post("/v1/events", json={"events": [{"event_id": "q1", "user_id": "u", "item_id": "i", "type": "view"}]}, headers=auth("storefront")).get_json()["accepted"] == 1
    # Load balancers' probes may add a cache-buster: the contract has /healthz answer 200 while the process runs.
    assert client.get("/healthz?probe=lb").status_code == 200 and client.get("/readyz?t=1").status_code == 200


def test_a_name_of_digits_is_a_field_not_a_batch_position(client, auth, db):
    # "¹".isdigit() but int("¹") fails: such a name had made most endpoints answer 500.
    for name in ("\u00b9", "\u2460", "7"):
        answer = client.post("/v1/keys", json={"role": "analyst", name: 1}, headers=auth("admin"))
        assert answer.status_code == 422 and answer.get_json()["error"]["details"] == [{"field": name, "message": "is not a field here"}], answer.get_json()
        popular = client.get(f"/v1/items/popular?{quote(name)}=1", headers=auth("storefront"))
        assert popular.status_code == 422 and "index" not in popular.get_json()["error"]["details"][0], popular.get_json()
    assert len(get_ok(client, "/v1/keys", auth("admin"))["keys"]) == 4  # the fixture's four, nothing more
    # A batch's position is still given.
    batch = client.post("/v1/events", json={"events": [{"event_id": "ok", "user_id": "u", "item_id": "i", "type": "view"}, {"event_id": "bad"}]}, headers=auth("storefront"))
    assert batch.status_code == 422 and batch.get_json()["error"]["details"][0]["index"] == 1


@pytest.mark.parametrize("op", [[], {}, [None]])
def test_a_targeting_operator_that_is_not_text_is_422(client, auth, op):
    body = {**ab_definition(), "targeting": {"all": [{"attribute": "country", "op": op, "value": "de"}]}}
    refused(client.post("/v1/experiments", json=body, headers=auth("editor")), 422, "targeting.all.0.op")
    assert client.get("/v1/experiments/points-q4", headers=auth("analyst")).status_code == 404


def test_a_url_that_is_not_utf8_once_decoded_is_400_and_records_nothing(client, auth, db):
    running(client, auth("editor"), ab_definition())
    shop = auth("storefront")
    before = stored(db)
    refused(client.get("/v1/experiments/points-q4/assignment?user_id=%FF", headers=shop), 400)
    refused(client.get("/v1/users/%ED%A0%80/recommendations", headers=shop), 400)
    refused(client.get("/v1/experiments/points-q4/users/%FF/rewards", headers=shop), 400)
    assert stored(db) == before
    # Escapes of real UTF-8 are ids like any other.
    assert assign(client, shop, "points-q4", "caf\u00e9")["user_id"] == "caf\u00e9"
    assert get_ok(client, "/v1/experiments/points-q4/assignment?user_id=%C3%A9t%C3%A9", shop)["user_id"] == "\u00e9t\u00e9"
    assert get_ok(client, "/v1/users/%C3%A9t%C3%A9/recommendations", shop)["user_id"] == "\u00e9t\u00e9"


@pytest.mark.parametrize("query, field", [
    ("n=5_0", "query.n"), ("n=%2B5", "query.n"), ("n=%205", "query.n"), ("n=5.5", "query.n"),
    ("exclude=a&exclude=b", "query.exclude"), ("n=5&n=6", "query.n"),
])
def test_query_numbers_are_plain_digits_and_a_parameter_is_given_once(client, auth, query, field):
    resp = client.get(f"/v1/users/u1/recommendations?{query}", headers=auth("storefront"))
    refused(resp, 422, field)
    # Only exclude's message says how to send several values in one.
    assert ("comma-separated" in resp.get_json()["error"]["message"]) == (field == "query.exclude" and "&" in query)


def test_a_whole_number_written_as_a_float_is_that_number(client, auth):
    assert len(get_ok(client, "/v1/items/popular?n=10.0", auth("storefront"))["items"]) <= 10


def test_query_alpha_is_a_plain_number(client, auth):
    running(client, auth("editor"), ab_definition())
    refused(client.get("/v1/experiments/points-q4/results?alpha=0.0_5", headers=auth("analyst")), 422, "query.alpha")
    assert get_ok(client, "/v1/experiments/points-q4/results?alpha=5e-2", auth("analyst"))["alpha"] == 0.05


def test_exclude_is_bounded_so_that_the_request_line_fits(client, auth):
    shop = auth("storefront")
    at_most = ",".join(["x" * 99] * 16)[:MAX_EXCLUDE_BYTES]
    assert len(at_most) == MAX_EXCLUDE_BYTES
    assert client.get("/v1/users/u1/recommendations", query_string={"exclude": at_most}, headers=shop).status_code == 200
    refused(client.get("/v1/users/u1/recommendations", query_string={"exclude": at_most + "y"}, headers=shop), 422, "query.exclude")
    wide = "é" * (MAX_EXCLUDE_BYTES // 2 + 1)  # few characters, too many bytes
    refused(client.get("/v1/users/u1/recommendations", query_string={"exclude": wide}, headers=shop), 422, "query.exclude")


def test_metrics_names_its_charset_once(client):
    content_type = client.get("/metrics").headers["Content-Type"]
    assert content_type.count("charset=utf-8") == 1 and content_type.startswith("text/plain")


def test_openapi_documents_the_server_and_database_errors(client):
    paths = get_ok(client, "/openapi.json", {})["paths"]
    for path, methods in paths.items():
        for method, op in methods.items():
            assert {"414", "431"} <= set(op["responses"]), (method, path)
            assert list(op["responses"]["414"]["content"]) == ["application/json"]
            if path.startswith("/v1/"):
                assert "503" in op["responses"], (method, path)
    exclude = next(p for p in paths["/v1/users/{user_id}/recommendations"]["get"]["parameters"] if p["name"] == "exclude")
    # Its bound is on bytes, which JSON Schema's maxLength (characters) cannot say: a client that
    # validated 1,500 characters against it would send up to 6,000 bytes and meet a 422.
    assert exclude["schema"]["x-maxBytes"] == MAX_EXCLUDE_BYTES and "maxLength" not in exclude["schema"]["anyOf"][0]


# --- the database unreachable ----------------------------------------------------------------


def test_every_v1_call_answers_503_when_the_database_is_unreachable(tmp_path):
    config = Config(database_url=CLOSED_PORT_URL, model_dir=tmp_path / "models", training_runner="thread", log_requests=False, log_level="WARNING", testing=True)
    app = create_app(config)
    client = app.test_client()
    headers = {"Authorization": "Bearer sl_not_checked_because_the_database_is_down"}
    calls = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        path = plain_rule(rule.rule)
        for name in rule.arguments:
            path = path.replace(f"<{name}>", "x")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            resp = client.open(path, method=method, json={}, headers=headers)
            error = refused(resp, 503)
            assert error["code"] == "unavailable" and "\n" not in error["message"], (method, path, error)
            # The driver's words stay in the log: they name the database's host and port.
            assert "127.0.0.1" not in error["message"] and resp.headers["Retry-After"] == "1", (method, path, error)
            calls += 1
    assert calls > 20
    assert client.get("/readyz").status_code == 503 and client.get("/healthz").status_code == 200
    app.extensions["stickyloop"].db.dispose()


# --- entry points: one line, not a traceback -------------------------------------------------


def _run_all(commands: dict[str, tuple[list[str], dict[str, str]]], tmp_path: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run every command at once (each imports numpy and scipy): answer each one's outcome."""
    base = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "DB_POOL_SIZE")}
    base.update({"MODEL_DIR": str(tmp_path / "models"), "BIND": "127.0.0.1:1", "WEB_CONCURRENCY": "1"})
    procs = {name: subprocess.Popen(argv, cwd=ROOT, env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name, (argv, env) in commands.items()}
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def test_a_bad_environment_or_an_unreachable_database_is_one_line(tmp_path):
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"]
    gunicorn_cmd = [sys.executable, "-m", "gunicorn", "-c", "service/gunicorn_conf.py", "wsgi:app"]
    train = [sys.executable, "-m", "service.usecases.train_job", "v-none"]
    bad = {"LOG_LEVEL": {"LOG_LEVEL": "loud"}, "DB_POOL_SIZE": {"DB_POOL_SIZE": "abc"}}
    commands = {(tool, var): (argv, env) for var, env in bad.items() for tool, argv in (("flask", flask), ("gunicorn", gunicorn_cmd), ("train", train))}
    commands[("flask", "database")] = (flask, {"DATABASE_URL": CLOSED_PORT_URL})
    for var in ("GUNICORN_THREADS", "GUNICORN_TIMEOUT"):  # read by the project's gunicorn settings, not the app
        commands[("gunicorn", var)] = (gunicorn_cmd, {var: "1m"})
    # gunicorn itself had served nothing with 0 workers, and printed a traceback for an event-loop worker class.
    commands[("gunicorn", "WEB_CONCURRENCY")] = (gunicorn_cmd, {"WEB_CONCURRENCY": "0"})
    commands[("gunicorn", "GUNICORN_WORKER_CLASS")] = (gunicorn_cmd, {"GUNICORN_WORKER_CLASS": "gevent"})
    # A metrics folder that cannot be made had answered every request, /healthz too, with a 500.
    (tmp_path / "a-file").write_text("")
    commands[("gunicorn", "PROMETHEUS_MULTIPROC_DIR")] = (gunicorn_cmd, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "a-file" / "prom")})
    commands[("gunicorn", "BIND")] = (gunicorn_cmd, {"BIND": "127.0.0.1:99999"})
    results = _run_all(commands, tmp_path)
    for (tool, var), result in results.items():
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and 1 <= len(lines) <= 3 and "Traceback" not in result.stderr, (tool, var, result.stderr)
        assert lines[-1].startswith("stickyloop: "), (tool, var, lines)
        if var == "database":
            assert "database is unavailable" in lines[-1] and result.returncode == 1
        else:
            assert var in lines[-1] and result.returncode == 2, (tool, var, result.returncode)


def test_a_gunicorn_whose_model_folder_cannot_be_written_says_so_at_start_and_serves(tmp_path):
    (tmp_path / "a-file").write_text("")
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "MODEL_DIR": str(tmp_path / "a-file" / "models"), "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True, timeout=60)
    with gunicorn(env, workers=1, log_dir=tmp_path) as server:
        assert server.request("GET", "/readyz")[0] == 200
    log = server.log_path.read_text()
    assert log.count("MODEL_DIR") == 1 and "cannot be written" in log and "Traceback" not in log, log


def test_gunicorns_access_log_stays_one_json_object_a_line_whatever_the_request_line_holds(tmp_path):
    # Its format filled in by gunicorn escaped `"` but not `\\`: a backslash made the line unreadable or another request.
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "MODEL_DIR": str(tmp_path / "models"), "TMPDIR": str(tmp_path), "HOME": str(tmp_path),
           "GUNICORN_ACCESS_LOG": "-", "LOG_REQUESTS": "false"}
    lines = ['GET /healthz?a=\\ HTTP/1.1', 'GET /healthz?x=\\",\\"remote\\":\\"1.2.3.4 HTTP/1.1', 'GET /healthz?a=\\u0022 HTTP/1.1']
    with gunicorn(env, workers=1) as server:
        for line in lines:
            _send_raw(server.base, f"{line}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        deadline = time.monotonic() + 30
        while server.log_path.read_text().count('"duration_us"') < len(lines) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    logged = [json.loads(l) for l in server.log_path.read_text().splitlines() if '"duration_us"' in l]
    assert [e["request"] for e in logged if "?" in e["request"]] == lines and all(e["status"] == 200 for e in logged)


def test_a_gunicorn_that_cannot_start_leaves_no_metrics_folder_behind(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "MODEL_DIR": str(tmp_path / "models"), "TMPDIR": str(tmp_path), "HOME": str(tmp_path),
           "BIND": "127.0.0.1:%d" % taken.getsockname()[1]}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "service/gunicorn_conf.py", "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert done.returncode != 0 and "Can't connect" in done.stderr
    assert list(tmp_path.glob("stickyloop-prom-*")) == []


def test_a_daemonised_gunicorn_removes_its_metrics_folder_when_it_stops(tmp_path):
    pid_file = tmp_path / "gunicorn.pid"
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "MODEL_DIR": str(tmp_path / "models"), "TMPDIR": str(tmp_path), "HOME": str(tmp_path),
           "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([sys.executable, "-m", "gunicorn", "-c", "service/gunicorn_conf.py", "--daemon", "--pid", str(pid_file), "wsgi:app"], cwd=ROOT, env=env, check=True, timeout=60)
    # gunicorn writes its pid file before it installs its signal handlers: a SIGTERM in between
    # kills it with no exit hooks. Wait until it serves, when its handlers are in place.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _send(f"http://127.0.0.1:{port}", "/healthz", {})[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.05)
    assert len(list(tmp_path.glob("stickyloop-prom-*"))) == 1
    master = int(pid_file.read_text())
    os.kill(master, signal.SIGTERM)
    # gunicorn unlinks its pid file before its exit hooks run, so the folder goes a moment later
    # (longer on a loaded machine): wait for it, up to a bound.
    deadline = time.monotonic() + 30
    while list(tmp_path.glob("stickyloop-prom-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("stickyloop-prom-*")) == []


def test_gunicorn_starts_with_the_database_unreachable_says_so_once_and_answers_503(tmp_path):
    env = {"DATABASE_URL": "postgresql+psycopg://postgres:hunter1@127.0.0.1:1/nothing?password=hunter2", "MODEL_DIR": str(tmp_path / "models"),
           "LOG_LEVEL": "INFO", "LOG_REQUESTS": "false",
           "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}  # where it makes its metrics folder (removed when it stops), and ~
    with gunicorn(env, workers=1) as server:
        status, body = server.request("GET", "/v1/items/popular", key="sl_unknown")
        assert status == 503 and body["error"]["code"] == "unavailable"
        assert server.request("GET", "/readyz")[0] == 503
        assert len(list(tmp_path.glob("stickyloop-prom-*"))) == 1
        # gunicorn 27's control socket is one path per user: two servers on a host took it from each other.
        assert not (tmp_path / ".gunicorn").exists()
    assert list(tmp_path.glob("stickyloop-prom-*")) == []  # removed with the server (they had piled up)
    log = server.log_path.read_text()
    assert log.count("stickyloop: serving without the database for now: the database is unavailable") == 1 and "Traceback" not in log
    # The database it uses is named, without a password in either place a URL can hold one.
    assert "stickyloop: database postgresql+psycopg://postgres:***@127.0.0.1:1/nothing" in log and "hunter" not in log


# --- a real gunicorn: every documented parameter fits its request line -----------------------


def _send(base: str, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def _send_raw(base: str, request: bytes, half_close: bool = False) -> tuple[int, str, bytes]:
    """Send bytes as they are (then, with `half_close`, say no more will come); read the answer to the end
    (gunicorn closes the connection after a refusal)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers.get("content-type", ""), body


def _chunked_events(bearer: dict[str, str], events: int) -> bytes:
    """A POST /v1/events whose body comes in chunks, with no Content-Length to refuse it by."""
    body = json.dumps({"events": [{"event_id": f"c{i}", "user_id": "u", "item_id": "i", "type": "view"} for i in range(events)]}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096]) for i in range(0, len(body), 4096))
    return (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer["Authorization"].encode()
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n")


def test_gunicorn_reads_the_longest_documented_request_and_refuses_longer_ones(config, app, keys):
    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false",
           "MAX_CONTENT_LENGTH": "100000"}
    bearer = {"Authorization": f"Bearer {keys['storefront']}"}
    # Every parameter at its maximum, every byte percent-encoded: four-byte characters in
    # user_id and category, and ids of characters a client must escape in `exclude`.
    user = quote("\U0001F600" * 128, safe="")
    exclude = ",".join([":" * 127] * 12)[:MAX_EXCLUDE_BYTES]
    query = urlencode({"n": 100, "category": "\U0001F600" * 128, "exclude": exclude}, safe="")
    longest = f"/v1/users/{user}/recommendations?{query}"
    assert len(longest) > 4094  # gunicorn's default limit, which refused it before
    with gunicorn(env, workers=1) as server:
        status, _, body = _send(server.base, longest, bearer)
        assert status == 200, body[:300]
        assert json.loads(body)["user_id"] == "\U0001F600" * 128
        # A chunked body over the limit is a 413, not JSON cut short at the limit and called malformed.
        assert _send_raw(server.base, _chunked_events(bearer, 100))[:2] == (200, "application/json")
        status, _, body = _send_raw(server.base, _chunked_events(bearer, 5000))
        assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
        # So is one sent to an action that takes no body, which was obeyed: the draft stays a draft.
        editor = f"Bearer {keys['editor']}".encode()
        assert server.request("POST", "/v1/experiments", ab_definition(key="chunked"), key=keys["editor"])[0] == 201
        padded = b"{}" + b" " * 200_000
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(padded[i:i + 4096]), padded[i:i + 4096]) for i in range(0, len(padded), 4096))
        start = (b"POST /v1/experiments/chunked/start HTTP/1.1\r\nHost: x\r\nAuthorization: " + editor
                 + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
        assert _send_raw(server.base, start)[0] == 413
        # A body that ends before its Content-Length (the client gave up) is a 400, not acted on.
        short = b'{"items": [{"item_id": "cut-short"}]}'
        cut = (b"POST /v1/items HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer["Authorization"].encode()
               + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(short) + 20, short))
        status, _, body = _send_raw(server.base, cut, half_close=True)
        assert status == 400 and "Content-Length" in json.loads(body)["error"]["message"]
        pause = (b"POST /v1/experiments/chunked/pause HTTP/1.1\r\nHost: x\r\nAuthorization: " + editor
                 + b"\r\nContent-Length: 50\r\nConnection: close\r\n\r\n{}")
        assert _send_raw(server.base, pause, half_close=True)[0] == 400
        assert server.request("GET", "/v1/experiments/chunked", key=keys["editor"])[1]["status"] == "draft"
        assert server.request("GET", "/v1/items/cut-short", key=keys["storefront"])[0] == 404
        # A path or query escape that decodes to bytes that are not UTF-8, as gunicorn hands it on.
        for bad in ("/v1/users/%ED%A0%80/recommendations", "/v1/users/ok/recommendations?category=%FF"):
            status, content_type, body = _send(server.base, bad, bearer)
            assert (status, content_type) == (400, "application/json"), body[:300]
        # Refused by gunicorn before any app sees them, still in the contract's error shape.
        for answer, status, code in (
            (_send(server.base, longest + "&n=1" + "0" * 8190, bearer), 414, "uri_too_long"),
            (_send(server.base, "/v1/items/popular", {**bearer, "X-Padding": "p" * 9000}), 431, "headers_too_large"),
            (_send_raw(server.base, b"NOT A REQUEST\r\n\r\n"), 400, "bad_request"),
            # A malformed chunked body: gunicorn finds out only as the app reads it.
            (_send_raw(server.base, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer["Authorization"].encode()
                       + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n"), 400, "bad_request"),
        ):
            assert answer[:2] == (status, "application/json")
            error = json.loads(answer[2])["error"]
            assert error["code"] == code and error["details"] == [] and error["message"] and "\n" not in error["message"]


HUGE = 10**400  # a JSON integer no double holds: math.isfinite raises on it


def test_integers_beyond_any_double_are_422_not_500_and_store_nothing(client, auth, db):
    editor, shop = auth("editor"), auth("storefront")
    before = stored(db)
    for op, value in (("gt", HUGE), ("eq", HUGE), ("in", [1, HUGE])):
        targeted = ab_definition(key=f"huge-{op}")
        targeted["targeting"] = {"all": [{"attribute": "x", "op": op, "value": value}]}
        refused(client.post("/v1/experiments", json=targeted, headers=editor), 422, "value")
    for body, field in (
        ({"matrix": {"half_life_days": HUGE}}, "matrix"),
        ({"matrix": {"weights": {"view": HUGE}}}, "matrix"),
        ({"params": {"regularization": HUGE}}, "params.regularization"),
        ({"params": {"regularization": 1e13}}, "params.regularization"),
        ({"tune": {"trials": 2, "space": {"regularization": [0.01, HUGE]}}}, "tune.space.regularization"),
        ({"tune": {"trials": 2, "space": {"regularization": {"choices": [1e13]}}}}, "tune.space.regularization.choices"),
        ({"evaluation": {"eval_users": 10**400}}, "evaluation.eval_users"),  # served for ever in the version, unreadable as a double
        ({"evaluation": {"eval_users": 2**64}}, "evaluation.eval_users"),
    ):
        refused(client.post("/v1/models", json={"algorithm": "als", **body}, headers=editor), 422, field)
    assert stored(db) == before
    running(client, editor, ab_definition(key="plain"))
    with_plain = stored(db)
    huge_attribute = {"user_id": "u-huge", "experiments": ["plain"], "attributes": {"x": HUGE}}
    refused(client.post("/v1/assignments", json=huge_attribute, headers=shop), 422, "attributes.x")
    assert stored(db) == with_plain


def test_an_ease_fit_that_overflows_single_precision_fails_instead_of_serving_nothing(client, auth):
    from tests.helpers import train, two_tribes

    editor = auth("editor")
    two_tribes(client, auth("storefront"))
    weights = {"view": 1e12, "click": 1e12, "purchase": 1e12, "add_to_cart": 1e12}
    body = train(client, editor, {"algorithm": "ease", "matrix": {"scaling": "linear", "alpha": 1e12, "weights": weights}, "activate": False})
    assert body["status"] == "failed" and "no finite solution" in body["error"], body


def test_an_action_without_a_body_refuses_one_instead_of_ignoring_it(client, auth, db):
    editor = auth("editor")
    running(client, editor, ab_definition())
    before = stored(db)
    json_headers = {**editor, "Content-Type": "application/json"}
    refused(client.post("/v1/experiments/points-q4/pause", data='{"force": true}', headers=json_headers), 422, "body")
    refused(client.post("/v1/experiments/points-q4/pause", data="{bad json", headers=json_headers), 400)
    assert stored(db) == before and get_ok(client, "/v1/experiments/points-q4", editor)["status"] == "running"
    for empty in ("", "{}", " {} "):
        assert client.post("/v1/experiments/points-q4/pause", data=empty, headers=json_headers).status_code == 200
        assert client.post("/v1/experiments/points-q4/start", data=empty, headers=json_headers).status_code == 200


# --- tiny values, long action names, integers beyond a double ---------------------------------------


@pytest.mark.parametrize("tiny", [1e-300, 5e-324, -1e-170, 1e-150, 1e-100])
def test_values_near_zero_leave_every_read_of_an_experiment_working(client, auth, keys, tiny):
    # PostgreSQL refuses a float product that rounds to 0: the square of one such purchase had made
    # results, the CSV and the console fail for good, with no way to remove the row.
    from tests.http.test_console import sign_in

    shop, analyst = auth("storefront"), auth("analyst")
    running(client, auth("editor"), ab_definition())
    for u in range(6):
        assign(client, shop, "points-q4", f"tiny{u}")
    post_ok(client, "/v1/events", {"events": [{"event_id": f"e{u}", "user_id": f"tiny{u}", "item_id": "i1", "type": "purchase", "value": tiny * (u + 1)} for u in range(3)]}, shop)
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o{u}", "experiment": "points-q4", "user_id": f"tiny{u}", "metric": "spend", "value": tiny} for u in range(6)]}, shop)
    for metric in ("revenue", "spend"):
        for query in ("", "&cuped=true", "&sequential=true"):
            body = get_ok(client, f"/v1/experiments/points-q4/results?metric={metric}{query}", analyst)
            assert client.get(f"/v1/experiments/points-q4/results.csv?metric={metric}{query}", headers=analyst).status_code == 200
            if query == "":  # sums keep the values as stored: only factors of a product count as 0
                assert sum(a["total"] for a in body["arms"]) == pytest.approx(6 * tiny, rel=1e-9)
    bandit = bandit_definition(metrics=[{"key": "spend", "kind": "continuous"}], primary_metric="spend")
    running(client, auth("editor"), bandit)
    for u in range(6):
        assign(client, shop, "bonus-bandit", f"tiny{u}")
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"b{u}", "experiment": "bonus-bandit", "user_id": f"tiny{u}", "metric": "spend", "value": tiny} for u in range(6)]}, shop)
    get_ok(client, "/v1/experiments/bonus-bandit/results", analyst)
    post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": "best_arm"}, analyst)
    sign_in(client, keys["analyst"])
    for path in ("/ui/experiments/points-q4/results?metric=revenue", "/ui/experiments/points-q4/results?metric=spend", "/ui/experiments/bonus-bandit/results",
                 "/ui/experiments/bonus-bandit/what-if"):
        assert client.get(path).status_code == 200, path


def test_a_long_action_name_does_not_break_the_ledger_of_an_action_that_does_not_qualify(client, auth):
    shop = auth("storefront")
    body = ab_definition()
    for arm in body["arms"]:
        arm["schedule"]["action"] = "subscription_renewal_with_a_long_name"
    running(client, auth("editor"), body)
    assign(client, shop, "points-q4", "u1")
    answer = post_ok(client, "/v1/rewards", {"action_id": "a1", "user_id": "u1", "experiment": "points-q4", "action": "purchase", "value": 5}, shop)
    assert (answer["rewarded"], answer["points"]) == (False, 0)
    history = get_ok(client, "/v1/experiments/points-q4/users/u1/rewards", shop)["history"]
    assert "subscription_renewal_with_a_long_name" in history[0]["reason"]


@pytest.mark.parametrize("where", ["item", "payload"])
def test_an_integer_no_double_can_hold_is_refused_in_free_form_json(client, auth, db, where):
    huge = 10**400  # JSON.parse reads it as Infinity, as it would 1e400, which is refused too
    before = stored(db)
    if where == "item":
        resp = client.post("/v1/items", json={"items": [{"item_id": "i1", "attributes": {"n": huge}}]}, headers=auth("storefront"))
    else:
        body = ab_definition()
        body["arms"][0]["payload"] = {"nested": [1, {"n": -huge}]}
        resp = client.post("/v1/experiments", json=body, headers=auth("editor"))
    refused(resp, 422)
    assert stored(db) == before


# --- a name given twice in one JSON object --------------------------------------------------------


def test_a_body_that_gives_a_name_twice_is_refused_and_stores_nothing(client, auth, db):
    # Parsers keep the last of a repeated name: the first body had stored no event at all, the
    # second a return of 5 under another id, the third an experiment of another key at 1 % traffic.
    shop, editor = auth("storefront"), auth("editor")
    before = stored(db)
    event = '{"event_id": "a", "user_id": "u", "item_id": "sku-1", "type": "purchase", "value": 5}'
    for path, body, headers in (
        ("/v1/events", f'{{"events": [{event}], "events": []}}', shop),
        ("/v1/events", f'{{"events": [{event}], "events": "x"}}', shop),  # refused as repeated, not as the last copy's type
        ("/v1/events", '{"events": [{"event_id": "a", "event_id": "b", "user_id": "u", "item_id": "sku-1", "type": "purchase", "value": 5, "value": -5}]}', shop),
        ("/v1/experiments", json.dumps(ab_definition(key="ka"))[:-1] + ', "key": "kb", "traffic": 1, "traffic": 0.01}', editor),
        ("/v1/models", '{"algorithm": "als", "params": {"factors": 8, "factors": 4096}}', editor),
    ):
        error = refused(client.post(path, data=body, headers={**headers, "Content-Type": "application/json"}), 400)
        assert "twice in one object" in error["message"] and "\n" not in error["message"], error
    assert stored(db) == before
    # The same bodies with each name once are taken.
    assert client.post("/v1/events", data=f'{{"events": [{event}]}}', headers={**shop, "Content-Type": "application/json"}).status_code == 200
