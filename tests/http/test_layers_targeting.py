"""Layers keep experiments apart, targeting aims them, and an exposed user keeps their arm."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from experiments.layers import position
from service.store.tables import ExperimentRow
from tests.experiment_helpers import ab_definition, assign, running
from tests.helpers import get_ok, iso, post_ok


def layered(key: str, traffic: float, layer: str = "checkout", **extra):
    return ab_definition(key=key, layer=layer, traffic=traffic, **extra)


def test_ranges_are_given_at_start_and_a_start_that_does_not_fit_is_409(client, auth):
    editor = auth("editor")
    running(client, editor, layered("left", 0.5))
    running(client, editor, layered("right", 0.5))
    layer = get_ok(client, "/v1/layers/checkout", auth("analyst"))
    assert layer == {"layer": "checkout", "ranges": [{"experiment": "left", "start": 0.0, "end": 0.5}, {"experiment": "right", "start": 0.5, "end": 1.0}], "free": 0.0}
    post_ok(client, "/v1/experiments", layered("third", 0.2), editor, status=201)
    refused = client.post("/v1/experiments/third/start", headers=editor)
    assert refused.status_code == 409 and "0 of it is free" in refused.get_json()["error"]["message"]
    assert "held by left [0, 0.5) and right [0.5, 1); stop one of them" in refused.get_json()["error"]["message"]
    assert get_ok(client, "/v1/experiments/third", editor)["status"] == "draft"
    # Pausing keeps a range; stopping releases it, and the next start takes the first gap.
    post_ok(client, "/v1/experiments/left/pause", None, editor)
    assert client.post("/v1/experiments/third/start", headers=editor).status_code == 409
    post_ok(client, "/v1/experiments/left/stop", None, editor)
    started = post_ok(client, "/v1/experiments/third/start", None, editor)
    assert started["layer_range"] == {"start": 0.0, "end": 0.2}
    assert get_ok(client, "/v1/layers/checkout", editor)["free"] == 0.3  # not 0.30000000000000004
    # A running layered experiment's traffic cannot move out of its range.
    assert client.patch("/v1/experiments/third", json={"traffic": 0.3}, headers=editor).status_code == 409


@pytest.mark.parametrize("traffic", [5e-324, 1e-17, 1e-12])
def test_a_full_layer_has_no_room_for_even_the_narrowest_experiment(client, auth, traffic):
    editor = auth("editor")
    running(client, editor, layered("left", 0.5))
    running(client, editor, layered("right", 0.5))
    post_ok(client, "/v1/experiments", layered("sliver", traffic), editor, status=201)
    assert client.post("/v1/experiments/sliver/start", headers=editor).status_code == 409
    assert [r["experiment"] for r in get_ok(client, "/v1/layers/checkout", editor)["ranges"]] == ["left", "right"]


def test_ranges_never_overlap_however_the_shares_add_up(client, auth):
    # 0.1 + 0.2 + 0.7 exceeds 1 in floating point: the last range is cut to what is left, not spilled.
    editor = auth("editor")
    for key, traffic in (("a", 0.1), ("b", 0.2), ("c", 0.7)):
        running(client, editor, layered(key, traffic))
    ranges = get_ok(client, "/v1/layers/checkout", editor)["ranges"]
    assert all(left["end"] <= right["start"] for left, right in zip(ranges, ranges[1:])) and ranges[-1]["end"] <= 1.0
    post_ok(client, "/v1/experiments/b/stop", None, editor)
    running(client, editor, layered("d", 0.2 + 1e-13))  # short of the gap by less than the slack: fits, cut to the gap
    ranges = get_ok(client, "/v1/layers/checkout", editor)["ranges"]
    assert all(left["end"] <= right["start"] for left, right in zip(ranges, ranges[1:]))


def test_a_layered_experiment_enrols_exactly_the_users_in_its_range(client, auth):
    running(client, auth("editor"), layered("left", 0.3))
    running(client, auth("editor"), layered("right", 0.7))
    shop = auth("storefront")
    for u in range(300):
        user = f"u{u}"
        answers = post_ok(client, "/v1/assignments", {"user_id": user, "experiments": ["left", "right"]}, shop)["assignments"]
        pos = position("checkout", user)
        assert [a["enrolled"] for a in answers] == [pos < 0.3, pos >= 0.3]
        assert {a["reason"] for a in answers if not a["enrolled"]} == {"layer"}


def test_targeting_by_request_attributes_and_stickiness(client, auth):
    rule = {"all": [{"attribute": "country", "op": "in", "value": ["nl", "be"]}, {"attribute": "age", "op": "gte", "value": 18}]}
    running(client, auth("editor"), ab_definition(key="benelux", targeting=rule))
    shop = auth("storefront")
    assert assign(client, shop, "benelux", "u1", **{"attr.country": "nl", "attr.age": "30"})["enrolled"] is True
    assert assign(client, shop, "benelux", "u2", **{"attr.country": "de", "attr.age": "30"})["reason"] == "targeting"
    assert assign(client, shop, "benelux", "u3", **{"attr.country": "nl"})["reason"] == "targeting"  # a missing attribute fails
    body = {"user_id": "u4", "experiments": ["benelux"], "attributes": {"country": "be", "age": 40}}
    first = post_ok(client, "/v1/assignments", body, shop)["assignments"][0]
    assert first["enrolled"] is True
    # Once exposed, a user keeps their arm whatever their attributes say now.
    later = post_ok(client, "/v1/assignments", {**body, "attributes": {"country": "de"}}, shop)["assignments"][0]
    assert later["arm"] == first["arm"] and later["enrolled"] is True
    assert assign(client, shop, "benelux", "u1")["enrolled"] is True
    # A refused user was not exposed: they enrol once they match.
    assert assign(client, shop, "benelux", "u2", **{"attr.country": "be", "attr.age": "30"})["enrolled"] is True


def test_a_boolean_rule_is_met_by_the_get_forms_text_as_by_the_json_form(client, auth):
    running(client, auth("editor"), ab_definition(key="vip", targeting={"all": [{"attribute": "vip", "op": "eq", "value": True}]}))
    shop = auth("storefront")
    assert assign(client, shop, "vip", "g1", **{"attr.vip": "true"})["enrolled"] is True
    assert assign(client, shop, "vip", "g2", **{"attr.vip": "True"})["enrolled"] is True
    assert assign(client, shop, "vip", "g3", **{"attr.vip": "false"})["reason"] == "targeting"
    assert assign(client, shop, "vip", "g4", **{"attr.vip": "1"})["reason"] == "targeting"  # only true and false spell a boolean
    body = {"user_id": "p1", "experiments": ["vip"], "attributes": {"vip": True}}
    assert post_ok(client, "/v1/assignments", body, shop)["assignments"][0]["enrolled"] is True
    body = {"user_id": "p2", "experiments": ["vip"], "attributes": {"vip": False}}
    assert post_ok(client, "/v1/assignments", body, shop)["assignments"][0]["reason"] == "targeting"
    # A rule's own text stays text: "True" in a rule is not the boolean, for either form.
    running(client, auth("editor"), ab_definition(key="text-true", targeting={"all": [{"attribute": "vip", "op": "eq", "value": "True"}]}))
    assert post_ok(client, "/v1/assignments", {"user_id": "t1", "experiments": ["text-true"], "attributes": {"vip": True}}, shop)["assignments"][0]["reason"] == "targeting"
    assert assign(client, shop, "text-true", "t2", **{"attr.vip": "True"})["enrolled"] is True


def test_targeting_on_behaviour_the_service_stored(client, auth):
    shop = auth("storefront")
    now = datetime.now(timezone.utc)
    events = [
        {"event_id": "q-1", "user_id": "quiet", "item_id": "i1", "type": "purchase", "value": 40.0, "timestamp": iso(now - timedelta(days=45))},
        {"event_id": "q-2", "user_id": "quiet", "item_id": "i2", "type": "view", "timestamp": iso(now - timedelta(days=40))},
        {"event_id": "a-1", "user_id": "active", "item_id": "i1", "type": "purchase", "value": 10.0, "timestamp": iso(now - timedelta(days=2))},
    ]
    post_ok(client, "/v1/events", {"events": events}, shop)
    win_back = {"all": [{"attribute": "idle_days", "op": "gte", "value": 30}, {"attribute": "purchases", "op": "gte", "value": 1}]}
    running(client, auth("editor"), ab_definition(key="win-back", targeting=win_back))
    assert assign(client, shop, "win-back", "quiet")["enrolled"] is True
    assert assign(client, shop, "win-back", "active")["reason"] == "targeting"
    assert assign(client, shop, "win-back", "stranger")["reason"] == "targeting"  # no events: no idle_days
    big = {"any": [{"attribute": "revenue", "op": "gt", "value": 20}, {"attribute": "days_since_first_seen", "op": "lt", "value": 1}]}
    running(client, auth("editor"), ab_definition(key="big-spenders", targeting=big))
    assert [assign(client, shop, "big-spenders", u)["enrolled"] for u in ("quiet", "active")] == [True, False]


def test_an_exposure_logged_late_is_targeted_on_behaviour_as_it_was_then(client, auth):
    # The built-ins had been read as of the request: a win-back exposure logged after the purchase it led to
    # saw the user as active (idle_days below 0) and refused them.
    shop = auth("storefront")
    shown_at = time.time() - 7200
    events = [
        {"event_id": "l-1", "user_id": "lapsed", "item_id": "i", "type": "purchase", "value": 5.0, "timestamp": iso(shown_at - 40 * 86400)},
        {"event_id": "l-2", "user_id": "lapsed", "item_id": "i", "type": "purchase", "value": 500.0, "timestamp": iso(shown_at + 3600)},
        {"event_id": "n-1", "user_id": "newcomer", "item_id": "i", "type": "purchase", "value": 5.0, "timestamp": iso(shown_at + 60)},
    ]
    post_ok(client, "/v1/events", {"events": events}, shop)
    rule = {"all": [{"attribute": "idle_days", "op": "gte", "value": 30}, {"attribute": "purchases", "op": "eq", "value": 1},
                    {"attribute": "revenue", "op": "lt", "value": 100}]}
    running(client, auth("editor"), ab_definition(key="win-back", targeting=rule))
    assert assign(client, shop, "win-back", "lapsed", timestamp=iso(shown_at))["enrolled"] is True
    assert assign(client, shop, "win-back", "newcomer", timestamp=iso(shown_at))["reason"] == "targeting"  # no events by then
    assert assign(client, shop, "win-back", "lapsed-too")["reason"] == "targeting"
    post_ok(client, "/v1/events", {"events": [{**events[0], "event_id": "t-1", "user_id": "lapsed-too"},
                                              {**events[1], "event_id": "t-2", "user_id": "lapsed-too"}]}, shop)
    assert assign(client, shop, "win-back", "lapsed-too")["reason"] == "targeting"  # now: bought an hour ago


def test_revenue_as_it_was_then_is_the_exact_sum_too(client, auth):
    shop = auth("storefront")
    shown_at = time.time() - 7200
    values = [(1e12, -3600), (0.01, -3000), (-1e12, -2400), (7.0, 3600)]  # the last after the exposure: read as of then
    post_ok(client, "/v1/events", {"events": [{"event_id": f"x-{k}", "user_id": "exact", "item_id": "i", "type": "purchase", "value": v,
                                               "timestamp": iso(shown_at + dt)} for k, (v, dt) in enumerate(values)]}, shop)
    running(client, auth("editor"), ab_definition(key="cents", targeting={"all": [{"attribute": "revenue", "op": "eq", "value": 0.01}]}))
    assert assign(client, shop, "cents", "exact", timestamp=iso(shown_at))["enrolled"] is True  # a float SUM gave 0.010009765625


def test_targeting_on_a_points_balance(client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(key="points-q4", weights=(1, 0.000001, 0.000001)))
    assign(client, shop, "points-q4", "rich")
    post_ok(client, "/v1/rewards", {"action_id": "r1", "user_id": "rich", "experiment": "points-q4", "value": 250.0}, shop)
    rule = {"all": [{"attribute": "points_balance.points-q4", "op": "gte", "value": 200}]}
    running(client, auth("editor"), ab_definition(key="vip", targeting=rule))
    assert assign(client, shop, "vip", "rich")["enrolled"] is True
    assert assign(client, shop, "vip", "poor")["reason"] == "targeting"


@pytest.mark.parametrize(
    "rule, field",
    [
        ({"all": [{"attribute": "x", "op": "like", "value": 1}]}, "targeting.all.0.op"),
        ({"any": [{"attribute": "x", "op": "eq", "value": 1}, {"attribute": "x", "op": "in", "value": 3}]}, "targeting.any.1.value"),
        ({"all": [{"all": [{"all": [{"all": [{"attribute": "x", "op": "exists"}]}]}]}]}, "targeting.all.0.all.0.all.0"),
        ({"both": []}, "targeting"),
        ({"all": []}, "targeting.all"),
        ({"all": [{"attribute": "x", "op": "gt", "value": "many"}]}, "targeting.all.0.value"),
        ({"all": [{"attribute": "x", "op": "exists", "value": 1}]}, "targeting.all.0.value"),
        ({"all": [{"attribute": "x", "op": "eq", "value": 1, "extra": 2}]}, "targeting.all.0.extra"),
        # A value left out would have matched nobody, and the experiment enrolled no one without a word.
        ({"all": [{"attribute": "x", "op": "eq"}]}, "targeting.all.0.value"),
        ({"all": [{"attribute": "x", "op": "ne", "value": None}]}, "targeting.all.0.value"),
        ({"all": [{"attribute": "x", "op": "in", "value": ["a", None]}]}, "targeting.all.0.value"),
    ],
)
def test_bad_rules_are_422_naming_the_path(client, auth, rule, field):
    resp = client.post("/v1/experiments", json=ab_definition(targeting=rule), headers=auth("editor"))
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"]["details"][0]["field"] == field


@pytest.mark.parametrize("value", [1e13, -2e12, 10**13, [1, 1e15], "x" * 1001, ["nl", "y" * 1001], "n\x00l"])
def test_a_rules_numbers_are_bounded_as_the_attributes_it_tests(client, auth, value):
    """Request attributes are at most 1e12 in magnitude: a rule beyond could never, or would always, match."""
    op = "in" if isinstance(value, list) else "gt" if not isinstance(value, str) else "eq"
    for send in (lambda rule: client.post("/v1/experiments", json=ab_definition(targeting=rule), headers=auth("editor")),
                 lambda rule: client.patch("/v1/experiments/points-q4", json={"targeting": rule}, headers=auth("editor"))):
        resp = send({"all": [{"attribute": "spend", "op": op, "value": value}]})
        assert resp.status_code == 422 and resp.get_json()["error"]["details"][0]["field"] == "targeting.all.0.value", resp.get_json()
        if resp.request.method == "POST":
            post_ok(client, "/v1/experiments", ab_definition(targeting={"all": [{"attribute": "spend", "op": "gt", "value": 1e12}]}), auth("editor"), status=201)


def test_a_rule_on_a_sum_of_history_may_go_past_a_request_attributes_bound(client, auth):
    # Revenue adds up purchases of up to 1e12 each: "revenue gt 2e12" had been refused, though users reach it.
    shop = auth("storefront")
    purchases = [{"event_id": f"{user}-{k}", "user_id": user, "item_id": "i1", "type": "purchase", "value": 1e12}
                 for user, n in (("whale", 3), ("big", 1)) for k in range(n)]
    post_ok(client, "/v1/events", {"events": purchases}, shop)
    running(client, auth("editor"), ab_definition(targeting={"all": [{"attribute": "revenue", "op": "gt", "value": 2e12}, {"attribute": "purchases", "op": "lt", "value": 1e15}]}))
    assert assign(client, shop, "points-q4", "whale")["enrolled"] is True
    assert assign(client, shop, "points-q4", "big")["reason"] == "targeting"
    resp = client.post("/v1/experiments", json=ab_definition("inf", targeting={"all": [{"attribute": "revenue", "op": "gt", "value": "1e400"}]}), headers=auth("editor"))
    assert resp.status_code == 422 and "finite" in resp.get_json()["error"]["details"][0]["message"]


def test_a_rule_stored_before_values_were_required_is_still_read(client, auth, db):
    running(client, auth("editor"), ab_definition(targeting={"all": [{"attribute": "tier", "op": "eq", "value": "gold"}]}))
    with db.write() as session:  # as an earlier version stored it: a condition without its value
        session.execute(update(ExperimentRow).where(ExperimentRow.key == "points-q4").values(targeting={"all": [{"attribute": "tier", "op": "eq"}]}))
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst"))["targeting"] == {"all": [{"attribute": "tier", "op": "eq"}]}
    time.sleep(1.1)  # a worker trusts what it read of an experiment for a second
    answer = assign(client, auth("storefront"), "points-q4", "u1", **{"attr.tier": "gold"})
    assert (answer["enrolled"], answer["reason"]) == (False, "targeting")
    # What may still change, does; the old rule is not checked again unless a change replaces it.
    resp = client.patch("/v1/experiments/points-q4", json={"name": "Renamed", "guardrails": ["revenue"]}, headers=auth("editor"))
    assert resp.status_code == 200, resp.get_json()


def test_a_draft_whose_stored_rule_todays_checks_refuse_cannot_start_until_changed(client, auth, db):
    """An older release saved drafts with a condition without a value: such a rule would enrol nobody once started."""
    editor = auth("editor")
    post_ok(client, "/v1/experiments", ab_definition(targeting={"all": [{"attribute": "tier", "op": "eq", "value": "gold"}]}), editor, status=201)
    with db.write() as session:
        session.execute(update(ExperimentRow).where(ExperimentRow.key == "points-q4").values(targeting={"all": [{"attribute": "tier", "op": "eq"}]}))
    refused = client.post("/v1/experiments/points-q4/start", headers=editor)
    assert refused.status_code == 409 and "targeting.all.0.value" in refused.get_json()["error"]["message"]
    assert get_ok(client, "/v1/experiments/points-q4", editor)["status"] == "draft"
    client.patch("/v1/experiments/points-q4", json={"targeting": {"all": [{"attribute": "tier", "op": "eq", "value": "gold"}]}}, headers=editor)
    assert post_ok(client, "/v1/experiments/points-q4/start", None, editor)["status"] == "running"


def test_a_rule_s_text_is_matched_as_that_text_and_numeric_text_only_as_json_spells_a_number(client, auth):
    # Both sides had been read with Python's float(): the zip code "01234" matched "1234", " 1234 ",
    # "1_234", "+1234", "1.234e3" and Arabic-Indic digits, and those users were enrolled.
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(key="zip", targeting={"all": [{"attribute": "zip", "op": "eq", "value": "01234"}]}))
    for i, other in enumerate(["1234", " 1234 ", "1_234", "+1234", "1.234e3", "\u0661\u0662\u0663\u0664", "01234 "]):
        assert assign(client, shop, "zip", f"z{i}", **{"attr.zip": other})["reason"] == "targeting", other
        body = {"user_id": f"zj{i}", "experiments": ["zip"], "attributes": {"zip": other}}
        assert post_ok(client, "/v1/assignments", body, shop)["assignments"][0]["reason"] == "targeting", other
    body = {"user_id": "zn", "experiments": ["zip"], "attributes": {"zip": 1234}}  # "01234" is no number as JSON writes one
    assert post_ok(client, "/v1/assignments", body, shop)["assignments"][0]["reason"] == "targeting"
    assert assign(client, shop, "zip", "zy", **{"attr.zip": "01234"})["enrolled"] is True
    # Against a number in the rule, text is a number only as JSON would write it.
    running(client, auth("editor"), ab_definition(key="adults", targeting={"all": [{"attribute": "age", "op": "gte", "value": 18}]}))
    for i, age in enumerate(["30", "30.0", "3e1"]):
        assert assign(client, shop, "adults", f"a{i}", **{"attr.age": age})["enrolled"] is True, age
    for i, age in enumerate([" 30", "+30", "3_0", "030", "30.", "\u0663\u0660", "thirty"]):
        assert assign(client, shop, "adults", f"n{i}", **{"attr.age": age})["reason"] == "targeting", age
    # Numeric text in a rule still equals the number it spells, sent as JSON or stored (purchases), and the
    # GET form's text: one rule, one answer, whichever form a storefront uses.
    running(client, auth("editor"), ab_definition(key="thirty", targeting={"all": [{"attribute": "x", "op": "eq", "value": "30"}]}))
    assert assign(client, shop, "thirty", "t1", **{"attr.x": "30"})["enrolled"] is True
    assert post_ok(client, "/v1/assignments", {"user_id": "t2", "experiments": ["thirty"], "attributes": {"x": 30}}, shop)["assignments"][0]["enrolled"] is True
    running(client, auth("editor"), ab_definition(key="new-buyers", targeting={"all": [{"attribute": "purchases", "op": "in", "value": ["0"]}]}))
    assert assign(client, shop, "new-buyers", "never-bought")["enrolled"] is True


def test_a_row_that_still_lists_a_built_in_metric_can_be_renamed(client, auth, db):
    """Rows stored before built-in metrics were refused in `metrics` are read without them; a change that
    leaves the metrics alone is not refused for them either."""
    running(client, auth("editor"), ab_definition())
    with db.write() as session:  # as an earlier release stored it
        session.execute(update(ExperimentRow).where(ExperimentRow.key == "points-q4").values(
            metrics=[{"key": "conversion", "kind": "binary", "higher_is_better": True}, {"key": "revenue", "kind": "continuous", "higher_is_better": True}]))
    resp = client.patch("/v1/experiments/points-q4", json={"name": "Renamed"}, headers=auth("editor"))
    assert resp.status_code == 200 and resp.get_json()["name"] == "Renamed", resp.get_json()
