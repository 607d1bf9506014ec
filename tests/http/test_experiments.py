"""Experiment definitions and lifecycle through HTTP: every move, every refusal."""
from __future__ import annotations

import pytest

from tests.experiment_helpers import ab_definition, bandit_definition, running
from tests.helpers import get_ok, post_ok


def test_create_answers_201_with_a_draft_and_reads_back(client, auth):
    created = post_ok(client, "/v1/experiments", ab_definition(), auth("editor"), status=201)
    assert created["status"] == "draft" and created["traffic"] == 1.0
    assert [a["key"] for a in created["arms"]] == ["control", "every5", "lottery"]
    assert created["arms"][1]["schedule"]["every"] == 5
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst")) == created
    listed = get_ok(client, "/v1/experiments", auth("analyst"))["experiments"]
    assert [e["key"] for e in listed] == ["points-q4"]
    assert get_ok(client, "/v1/experiments?status=running", auth("analyst"))["experiments"] == []


def test_duplicate_key_is_409(client, auth):
    post_ok(client, "/v1/experiments", ab_definition(), auth("editor"), status=201)
    resp = client.post("/v1/experiments", json=ab_definition(), headers=auth("editor"))
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"arms": [{"key": "only"}]}, "arms"),
        ({"arms": [{"key": "a"}, {"key": "a"}]}, "arms"),
        ({"arms": [{"key": "a", "weight": 0}, {"key": "b"}]}, "arms.0.weight"),
        ({"arms": [{"key": "Bad Key"}, {"key": "b"}]}, "arms.0.key"),
        ({"traffic": 0}, "traffic"),
        ({"traffic": 1.5}, "traffic"),
        ({"primary_metric": "nope"}, "primary_metric"),
        ({"type": "bandit"}, "bandit"),
        ({"bandit": {"algorithm": "thompson"}}, "bandit"),
        ({"metrics": [{"key": "revenue", "kind": "binary"}]}, "metrics.0.kind"),
        ({"metrics": [{"key": "revenue", "kind": "continuous"}], "primary_metric": "revenue"}, "metrics.0.key"),
        ({"metrics": [{"key": "conversion"}, {"key": "retention_d7"}]}, "metrics.1.key"),
        ({"arms": [{"key": "a", "schedule": {"type": "fixed_ratio", "every": 0, "points": 5}}, {"key": "b"}]}, "arms.0.schedule.every"),
        ({"arms": [{"key": "a", "schedule": {"type": "lottery"}}, {"key": "b"}]}, "arms.0.schedule"),
        ({"arms": [{"key": "a", "schedule": {"type": "per_unit", "points_per_unit": 1, "multiplier": {"factor": 2, "start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}}}, {"key": "b"}]}, "arms.0.schedule.multiplier.end"),
        ({"arms": [{"key": "a", "schedule": {"type": "per_unit", "points_per_unit": 1, "multiplier": {"factor": 2, "start": "2026-12-01T00:00:00", "end": "2026-12-02T00:00:00Z"}}}, {"key": "b"}]}, "arms.0.schedule.multiplier.start"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_definitions_are_422_naming_the_field_and_store_nothing(client, auth, change, field):
    body = ab_definition()
    body.update(change)
    resp = client.post("/v1/experiments", json=body, headers=auth("editor"))
    assert resp.status_code == 422, resp.get_json()
    fields = [d["field"] for d in resp.get_json()["error"]["details"]]
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert get_ok(client, "/v1/experiments", auth("editor"))["experiments"] == []


def test_bandit_needs_settings_and_a_reported_primary_metric(client, auth):
    body = bandit_definition(primary_metric="purchase_conversion")
    resp = client.post("/v1/experiments", json=body, headers=auth("editor"))
    assert resp.status_code == 422 and resp.get_json()["error"]["details"][0]["field"] == "primary_metric"
    body = bandit_definition(arms=3, bandit={"algorithm": "ucb1", "min_probability": 0.4})
    resp = client.post("/v1/experiments", json=body, headers=auth("editor"))
    assert resp.status_code == 422 and resp.get_json()["error"]["details"][0]["field"] == "bandit.min_probability"
    # Settings left out read back as the defaults the bandit runs with.
    created = post_ok(client, "/v1/experiments", bandit_definition(bandit={"algorithm": "ucb1"}), auth("editor"), status=201)
    assert created["bandit"] == {"algorithm": "ucb1", "epsilon": 0.1, "min_probability": 0.01, "attribution_hours": None}


def test_the_commonest_refusals_read_as_sentences_not_as_the_validation_library(client, auth):
    one_arm = {**ab_definition(), "arms": [{"key": "only"}], "colour": "red"}
    del one_arm["name"]
    details = {d["field"]: d["message"] for d in client.post("/v1/experiments", json=one_arm, headers=auth("editor")).get_json()["error"]["details"]}
    assert details == {"arms": "needs at least 2 entries, got 1", "name": "is required", "colour": "is not a field here"}


LIFECYCLE = [
    ("draft", "start", "running"),
    ("draft", "pause", None),
    ("draft", "stop", None),
    ("running", "start", None),
    ("running", "pause", "paused"),
    ("running", "stop", "stopped"),
    ("paused", "start", "running"),
    ("paused", "pause", None),
    ("paused", "stop", "stopped"),
    ("stopped", "start", None),
    ("stopped", "pause", None),
    ("stopped", "stop", None),
]
REACH = {"draft": [], "running": ["start"], "paused": ["start", "pause"], "stopped": ["start", "stop"]}


@pytest.mark.parametrize("status, action, after", LIFECYCLE, ids=[f"{s}-{a}" for s, a, _ in LIFECYCLE])
def test_every_lifecycle_move_and_every_refused_one(client, auth, status, action, after):
    editor = auth("editor")
    post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    for step in REACH[status]:
        post_ok(client, f"/v1/experiments/points-q4/{step}", None, editor)
    resp = client.post(f"/v1/experiments/points-q4/{action}", headers=editor)
    if after is None:
        assert resp.status_code == 409, resp.get_json()
        assert status in resp.get_json()["error"]["message"]
        assert get_ok(client, "/v1/experiments/points-q4", editor)["status"] == status
    else:
        assert resp.status_code == 200 and resp.get_json()["status"] == after


def test_design_is_frozen_outside_draft_but_name_and_traffic_may_change(client, auth):
    editor = auth("editor")
    running(client, editor, ab_definition())
    for change in ({"arms": ab_definition()["arms"][:2]}, {"metrics": [{"key": "x"}]}, {"type": "bandit"}, {"primary_metric": "spend"}):
        resp = client.patch("/v1/experiments/points-q4", json=change, headers=editor)
        assert resp.status_code == 409, change
    assert [a["key"] for a in get_ok(client, "/v1/experiments/points-q4", editor)["arms"]] == ["control", "every5", "lottery"]
    changed = client.patch("/v1/experiments/points-q4", json={"name": "Renamed", "traffic": 0.5}, headers=editor)
    assert changed.status_code == 200 and changed.get_json()["name"] == "Renamed" and changed.get_json()["traffic"] == 0.5


def test_a_patch_takes_null_exactly_where_the_published_schema_says_it_may(client, auth):
    # The schema had typed every field "or null" while the server refused null for most of them.
    editor = auth("editor")
    post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    fields = client.get("/openapi.json").get_json()["components"]["schemas"]["ExperimentPatch"]["properties"]
    for name, field in fields.items():
        takes_null = {"type": "null"} in field.get("anyOf", [])
        resp = client.patch("/v1/experiments/points-q4", json={name: None}, headers=editor)
        assert resp.status_code == (200 if takes_null else 422), (name, resp.get_json())
    assert sorted(n for n, f in fields.items() if {"type": "null"} in f.get("anyOf", [])) == ["bandit", "layer", "targeting"]


def test_a_started_experiment_takes_its_definition_sent_back_with_only_a_new_name(client, auth):
    # A client that reads, renames and writes back had been refused (409) for the arms it sent unchanged.
    editor = auth("editor")
    running(client, editor, {**ab_definition(), "layer": "checkout", "traffic": 0.4})
    stored = get_ok(client, "/v1/experiments/points-q4", editor)
    resent = {k: stored[k] for k in ("type", "traffic", "arms", "metrics", "primary_metric", "bandit", "layer", "targeting", "analysis", "guardrails")}
    renamed = client.patch("/v1/experiments/points-q4", json={**resent, "name": "Renamed"}, headers=editor)
    assert renamed.status_code == 200, renamed.get_json()
    assert renamed.get_json() == {**stored, "name": "Renamed", "revision": stored["revision"] + 1, "updated_at": renamed.get_json()["updated_at"]}
    # A design field that does change is still refused, naming only what changed.
    moved = client.patch("/v1/experiments/points-q4", json={**resent, "traffic": 0.5, "arms": resent["arms"][:2]}, headers=editor)
    assert moved.status_code == 409 and moved.get_json()["error"]["message"].startswith("arms can only change while the experiment is a draft")


def test_a_stopped_experiment_keeps_the_analysis_plan_it_was_read_by_at_the_stop(client, auth):
    editor = auth("editor")
    running(client, editor, {**ab_definition(), "guardrails": ["retention_d7"], "analysis": {"sequential": True}})
    post_ok(client, "/v1/experiments/points-q4/stop", None, editor)
    stored = get_ok(client, "/v1/experiments/points-q4", editor)
    # A guardrail the experiment would refuse anyway is answered as a change of the plan too: no value would be taken.
    # (A value the request's schema refuses, a cuped_days of 0, is a 422 before any experiment is read.)
    for change in ({"guardrails": []}, {"analysis": {**stored["analysis"], "sequential": False}}, {"guardrails": ["retention_d1"], "name": "Renamed"},
                   {"guardrails": ["nope"]}):
        refused = client.patch("/v1/experiments/points-q4", json=change, headers=editor)
        assert refused.status_code == 409, change
        assert refused.get_json()["error"]["message"].startswith(f"a stopped experiment keeps the {' and '.join(k for k in ('analysis', 'guardrails') if k in change)} it had at the stop")
    assert get_ok(client, "/v1/experiments/points-q4", editor) == stored  # the refused rename changed nothing either
    # Sending the plan as it is changes nothing, so it is no change; the name and description still change.
    same = client.patch("/v1/experiments/points-q4", json={"guardrails": stored["guardrails"], "analysis": stored["analysis"], "name": "Renamed"}, headers=editor)
    assert same.status_code == 200, same.get_json()
    assert same.get_json()["name"] == "Renamed" and same.get_json()["guardrails"] == ["retention_d7"]
    # The results can still be read another way, per request, without storing it.
    assert get_ok(client, "/v1/experiments/points-q4/results?sequential=false", auth("analyst"))["test"] == "two_proportion_z"


def test_a_draft_sent_back_as_it_reads_is_no_change(client, auth):
    # The row keeps a metric as sent ({"key", "kind"}); the same metric sent back as it reads (higher_is_better
    # filled in) had counted as a change, moving the revision a client compares.
    editor = auth("editor")
    bandit = {**ab_definition(), "key": "bandit-q4", "type": "bandit", "bandit": {"algorithm": "ucb1"}}
    for definition in (ab_definition(), bandit):
        post_ok(client, "/v1/experiments", definition, editor, status=201)
        stored = get_ok(client, f"/v1/experiments/{definition['key']}", editor)
        same = {k: stored[k] for k in ("name", "description", "type", "traffic", "arms", "metrics", "primary_metric", "bandit", "layer",
                                      "targeting", "analysis", "guardrails")}
        resent = client.patch(f"/v1/experiments/{definition['key']}", json=same, headers=editor)
        assert resent.status_code == 200, resent.get_json()
        assert get_ok(client, f"/v1/experiments/{definition['key']}", editor) == stored


def test_draft_can_change_anything_and_be_deleted(client, auth):
    editor = auth("editor")
    post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    resp = client.patch("/v1/experiments/points-q4", json={"arms": [{"key": "a", "weight": 3}, {"key": "b"}], "metrics": [{"key": "clicks", "kind": "continuous"}]}, headers=editor)
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert [a["weight"] for a in body["arms"]] == [3, 1.0] and body["primary_metric"] == "clicks"
    # A body a DELETE would ignore is refused, as on the other body-less actions; nothing is deleted.
    assert client.delete("/v1/experiments/points-q4", data="{not json", headers=editor).status_code == 400
    assert client.delete("/v1/experiments/points-q4", json={"force": True}, headers=editor).status_code == 422
    deleted = client.delete("/v1/experiments/points-q4", headers=editor)
    assert deleted.status_code == 204 and deleted.get_data() == b"" and "Content-Type" not in deleted.headers
    assert client.get("/v1/experiments/points-q4", headers=editor).status_code == 404


def test_only_drafts_can_be_deleted_and_unknown_keys_are_404(client, auth):
    editor = auth("editor")
    running(client, editor, ab_definition())
    refused = client.delete("/v1/experiments/points-q4", headers=editor)
    assert refused.status_code == 409 and refused.get_json()["error"]["message"].endswith("is running; stop it instead, which keeps its results")
    post_ok(client, "/v1/experiments/points-q4/stop", None, editor)
    stopped = client.delete("/v1/experiments/points-q4", headers=editor).get_json()["error"]["message"]
    assert stopped.endswith("is stopped; a stopped experiment keeps its results for good")
    shop = client.get("/v1/experiments", headers=auth("storefront")).get_json()["error"]["message"]
    assert shop.endswith("it needs an editor or analyst key (or an admin key)")
    keys = client.get("/v1/keys", headers=editor).get_json()["error"]["message"]
    assert keys == "an editor key cannot call this endpoint; it needs an admin key"
    for method, path in (("GET", "/v1/experiments/nope"), ("POST", "/v1/experiments/nope/start"), ("PATCH", "/v1/experiments/nope"), ("DELETE", "/v1/experiments/nope")):
        resp = client.open(path, method=method, json={} if method == "PATCH" else None, headers=editor)
        assert resp.status_code == 404, (method, path)


def test_a_draft_with_a_multiplier_window_can_be_patched(client, auth):
    schedule = {"type": "per_unit", "points_per_unit": 1, "multiplier": {"factor": 2, "start": "2026-12-01T00:00:00Z", "end": "2026-12-08T00:00:00Z"}}
    post_ok(client, "/v1/experiments", ab_definition(), auth("editor"), status=201)
    arms = [{"key": "control"}, {"key": "double", "schedule": schedule}]
    resp = client.patch("/v1/experiments/points-q4", json={"arms": arms}, headers=auth("editor"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["arms"][1]["schedule"]["multiplier"]["factor"] == 2
    assert client.patch("/v1/experiments/points-q4", json={"arms": None}, headers=auth("editor")).status_code == 422


def test_lifecycle_changes_are_logged_as_structured_lines(client, auth, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="service.usecases")
    running(client, auth("editor"), ab_definition())
    post_ok(client, "/v1/experiments/points-q4/stop", None, auth("editor"))
    moves = [(r.getMessage(), getattr(r, "action", None), getattr(r, "status", None)) for r in caplog.records if r.name == "service.usecases.experiments"]
    assert moves == [("experiment created", None, None), ("experiment moved", "start", "running"), ("experiment moved", "stop", "stopped")]


def test_refusals_of_repeated_keys_and_a_declared_built_in_metric_name_what_to_change(client, auth):
    from tests.experiment_helpers import ab_definition

    editor = auth("editor")
    twice = ab_definition(key="twice")
    twice["arms"][2]["key"] = twice["arms"][0]["key"]
    details = client.post("/v1/experiments", json=twice, headers=editor).get_json()["error"]["details"]
    assert any(d["field"] == "arms" and f"{twice['arms'][0]['key']!r} is the key of 2 arms" in d["message"] for d in details), details
    # One answer says both that the kind is wrong and that the metric needs no declaring: changing the kind alone was refused again.
    builtin = {**ab_definition(key="declared"), "metrics": [{"key": "revenue", "kind": "binary"}], "primary_metric": "revenue"}
    details = client.post("/v1/experiments", json=builtin, headers=editor).get_json()["error"]["details"]
    assert any("is continuous" in d["message"] and "without declaring it" in d["message"] for d in details), details


def test_one_answer_names_every_independent_problem_of_a_definition(client, auth):
    """A typo in the primary metric and in a guardrail, and a bad targeting rule: one 422 names all three,
    and the message counts them, so a script or a form is not sent back once per mistake."""
    from tests.experiment_helpers import ab_definition

    body = {**ab_definition(key="typos"), "primary_metric": "order", "guardrails": ["retention_d7", "revnue"],
            "targeting": {"attribute": "country", "op": "in", "value": []}}
    error = client.post("/v1/experiments", json=body, headers=auth("editor")).get_json()["error"]
    fields = [d["field"] for d in error["details"]]
    assert {"primary_metric", "guardrails.1"} <= set(fields) and any(f.startswith("targeting") for f in fields), error
    assert error["message"].endswith(f"(and {len(fields) - 1} more)")
    assert client.get("/v1/experiments/typos", headers=auth("editor")).status_code == 404
    # Each alone is still refused on its own.
    for one in ({"primary_metric": "order"}, {"guardrails": ["revnue"]}):
        error = client.post("/v1/experiments", json={**ab_definition(key="one"), **one}, headers=auth("editor")).get_json()["error"]
        assert len(error["details"]) == 1 and "(and" not in error["message"]


@pytest.mark.parametrize("change, expected", [
    # A metric whose own check fails is still declared: no "primary metric is required" beside its problem.
    ({"metrics": [{"key": "revenue", "kind": "binary"}], "primary_metric": None}, ["metrics.0.kind"]),
    ({"metrics": [{"key": "revenue", "kind": "binary"}], "primary_metric": "zz", "guardrails": ["nope"]}, ["metrics.0.kind", "primary_metric", "guardrails.0"]),
    # An arm's own problem does not hide what the names refer to.
    ({"arms": [{"key": "a", "schedule": {"type": "per_unit", "points_per_unit": 1, "multiplier": {
        "factor": 2, "start": "2026-12-10T00:00:00Z", "end": "2026-12-01T00:00:00Z"}}}, {"key": "b"}], "primary_metric": "zz", "guardrails": ["nope"]},
     ["arms.0.schedule.multiplier.end", "primary_metric", "guardrails.0"]),
    # Repeated arm keys neither.
    ({"arms": [{"key": "a"}, {"key": "a"}], "primary_metric": "qq", "guardrails": ["zz"]}, ["arms", "primary_metric", "guardrails.0"]),
    # An unknown guardrail given twice is named once, beside the repetition.
    ({"guardrails": ["nope", "nope"]}, ["guardrails.0", "guardrails"]),
    # Every bad condition of a rule, nested ones too, and then (the rule read) every value it may not hold.
    ({"targeting": {"all": [{"attribute": "a", "op": "in", "value": []}, {"any": [{"attribute": "b", "op": "nope", "value": 1}]},
                            {"attribute": "c", "op": "eq", "value": 1}]}},
     ["targeting.all.0.value", "targeting.all.1.any.0.op"]),
    ({"targeting": {"any": [{"attribute": "a", "op": "eq", "value": None}, {"attribute": "b", "op": "gt", "value": 1e300}]}},
     ["targeting.any.0.value", "targeting.any.1.value"]),
])
def test_the_details_name_each_problem_once_where_it_is(client, auth, change, expected):
    from tests.experiment_helpers import ab_definition

    body = {k: v for k, v in {**ab_definition(key="many"), **change}.items() if v is not None}
    error = client.post("/v1/experiments", json=body, headers=auth("editor")).get_json()["error"]
    assert [d["field"] for d in error["details"]] == expected, error
    assert client.get("/v1/experiments/many", headers=auth("editor")).status_code == 404


@pytest.mark.parametrize("change, expected", [
    # A bandit's settings are named after the rest, beside a typo rather than on the next submit.
    ({"guardrails": ["nope"], "bandit": {"algorithm": "thompson", "min_probability": 0.9}}, ["guardrails.0", "bandit.min_probability"]),
    ({"primary_metric": "zz", "bandit": {"algorithm": "thompson", "min_probability": 0.9}}, ["primary_metric", "bandit.min_probability"]),
    ({"type": "ab", "primary_metric": "zz"}, ["primary_metric", "bandit"]),
    ({"bandit": None, "guardrails": ["nope"]}, ["guardrails.0", "bandit"]),
])
def test_a_bandits_problems_come_in_the_same_answer_after_the_rest(client, auth, change, expected):
    from tests.experiment_helpers import bandit_definition

    body = {**bandit_definition(key="bb"), **change}
    if body.get("bandit") is None:
        body.pop("bandit", None)
    error = client.post("/v1/experiments", json=body, headers=auth("editor")).get_json()["error"]
    assert [d["field"] for d in error["details"]] == expected, error
