"""The published OpenAPI document says what the server does: a client generated from it is not refused,
nor does it lose data, where the document allowed what it sent."""
from __future__ import annotations

from typing import Any, Iterator

from tests.experiment_helpers import ab_definition
from tests.helpers import get_ok, post_ok

# JSON Schema 2020-12's keywords and OpenAPI's own; anything else a schema holds must be an `x-` extension.
_KEYWORDS = {
    "$ref", "$defs", "type", "enum", "const", "anyOf", "oneOf", "allOf", "not", "properties", "patternProperties",
    "additionalProperties", "propertyNames", "required", "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format", "default", "title", "description", "examples",
    "discriminator", "mapping", "propertyName", "readOnly", "writeOnly", "deprecated", "contentMediaType",
}


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object under `node`, the names of `properties` and `patternProperties` skipped."""
    if isinstance(node, list):
        for item in node:
            yield from _schemas(item)
    elif isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key in ("properties", "patternProperties", "$defs", "mapping"):
                for inner in value.values():
                    yield from _schemas(inner)
            elif key not in ("enum", "const", "default", "examples", "required"):
                yield from _schemas(value)


def _document(client: Any) -> dict[str, Any]:
    return client.get("/openapi.json").get_json()  # type: ignore[no-any-return]


def test_every_schema_keyword_is_one_a_json_schema_reader_knows(client):
    # Bounds wrapped around a validated integer had come out as pydantic's own "ge" and "le": checked, but unpublished.
    document = _document(client)
    found = {key for schema in _schemas(list(document["components"]["schemas"].values())) for key in schema}
    for path in document["paths"].values():
        for op in path.values():
            found |= {key for p in op.get("parameters", []) for schema in _schemas(p["schema"]) for key in schema}
    assert {key for key in found if not key.startswith("x-")} <= _KEYWORDS


def test_an_integer_written_with_a_zero_fraction_is_the_integer_and_any_other_fraction_is_refused(client, auth):
    # To JSON Schema 5.0 is an integer; the server had answered 422 "Input should be a valid integer".
    analyst, editor = auth("analyst"), auth("editor")
    plan = {"metric_kind": "binary", "baseline": 0.1, "mde": 0.02, "daily_users": 500}
    assert post_ok(client, "/v1/plans/sample-size", {**plan, "arms": 3.0}, analyst) == post_ok(client, "/v1/plans/sample-size", {**plan, "arms": 3}, analyst)
    definition = ab_definition(analysis={"cuped_days": 14.0})
    definition["arms"][1]["schedule"] = {"type": "fixed_ratio", "every": 5.0, "points": 100}
    stored = post_ok(client, "/v1/experiments", definition, editor, status=201)
    assert stored["arms"][1]["schedule"]["every"] == 5 and stored["analysis"]["cuped_days"] == 14
    assert type(stored["arms"][1]["schedule"]["every"]) is int
    for bad in (5.5, 0.0, 1e13, True, "5"):
        definition = ab_definition(key="other")
        definition["arms"][1]["schedule"] = {"type": "fixed_ratio", "every": bad, "points": 100}
        assert client.post("/v1/experiments", json=definition, headers=editor).status_code == 422, bad
    assert client.post("/v1/plans/sample-size", json={**plan, "arms": 2.5}, headers=analyst).status_code == 422


def test_a_patch_names_no_default_since_a_field_left_out_keeps_its_value(client, auth):
    # A null default for `layer` or `targeting`, filled in by a client, dropped the experiment's layer.
    fields = _document(client)["components"]["schemas"]["ExperimentPatch"]["properties"]
    assert [name for name, field in fields.items() if "default" in field] == []
    editor = auth("editor")
    post_ok(client, "/v1/experiments", {**ab_definition(), "layer": "checkout", "targeting": {"all": [{"attribute": "tier", "op": "eq", "value": "gold"}]}},
            editor, status=201)
    renamed = client.patch("/v1/experiments/points-q4", json={"name": "Renamed"}, headers=editor).get_json()
    assert renamed["layer"] == "checkout" and renamed["targeting"] is not None


def test_a_map_whose_names_the_schema_constrains_admits_no_other_name_there_or_on_the_server(client, auth):
    schemas = _document(client)["components"]["schemas"]
    constrained = [schema for schema in _schemas(list(schemas.values())) if "patternProperties" in schema]
    assert constrained and all(schema.get("additionalProperties") is False for schema in constrained)
    shop = auth("storefront")
    for name in ("", "n" * 129, "a\x00b"):
        refused = client.post("/v1/assignments", json={"user_id": "u1", "experiments": ["points-q4"], "attributes": {name: "x"}}, headers=shop)
        said = refused.get_json()["error"]["details"]
        assert refused.status_code == 422 and [d["field"] for d in said] == ["attributes"], name
        assert said[0]["message"].startswith(f"a name, {name[:40]!r}") and len(said[0]["message"]) < 200
    # A value held under the name "[key]", which is how pydantic marks a name's own failure, is still the value's.
    value = client.post("/v1/assignments", json={"user_id": "u1", "experiments": ["points-q4"], "attributes": {"[key]": [1]}}, headers=shop)
    assert {d["field"] for d in value.get_json()["error"]["details"]} == {"attributes.[key]"}


def test_guardrails_are_published_as_unique_and_a_repeat_is_refused(client, auth):
    schemas = _document(client)["components"]["schemas"]
    assert schemas["ExperimentIn"]["properties"]["guardrails"]["uniqueItems"] is True
    assert schemas["ExperimentPatch"]["properties"]["guardrails"]["uniqueItems"] is True
    resp = client.post("/v1/experiments", json={**ab_definition(), "guardrails": ["revenue", "revenue"]}, headers=auth("editor"))
    assert resp.status_code == 422


def test_every_timestamp_publishes_its_window(client):
    # The server refuses one before 2000 or over 100 years ahead; the document had said only "date-time".
    stamps = [schema for schema in _schemas(_document(client)) if schema.get("format") == "date-time"]
    assert stamps and all(s.get("x-formatMinimum") == "2000-01-01T00:00:00Z" and s.get("x-maxYearsAhead") == 100 for s in stamps)


def test_every_operation_that_reads_a_body_lists_the_415_and_413_it_can_answer(client, auth):
    document = _document(client)
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            reads_body = "requestBody" in op or (method in ("post", "put", "patch", "delete") and op.get("security") != [])
            if reads_body:
                assert {"413", "415"} <= set(op["responses"]), (method, path)
    editor = auth("editor")
    post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    for method, path, role in (("POST", "/v1/experiments/points-q4/start", "editor"), ("DELETE", "/v1/experiments/points-q4", "editor"), ("POST", "/v1/events", "storefront")):
        resp = client.open(path, method=method, data=b"{}", headers={**auth(role), "Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert resp.status_code == 415, (method, path)
    assert get_ok(client, "/v1/experiments/points-q4", editor)["status"] == "draft"
