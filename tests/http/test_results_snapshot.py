"""A results read of several statements sees one snapshot, whatever commits between them.

Each test commits new exposures (and their conversions or returns) through the HTTP API in the
middle of the read, between its statements, so that the interleaving a busy storefront makes now
and then happens every time.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from tests.experiment_helpers import ab_definition, assign, running
from tests.helpers import before_first, get_ok, iso, post_ok

DAY = 86_400


def test_conversions_committed_during_a_results_read_never_outnumber_its_users(client, auth):
    shop, analyst = auth("storefront"), auth("analyst")
    running(client, auth("editor"), ab_definition(weights=(1, 1)))
    assign(client, shop, "points-q4", "u0")
    post_ok(client, "/v1/outcomes", {"outcomes": [_outcome("u0", "conversion")]}, shop)

    def newcomers(first: int, metric: str) -> Callable[[], None]:
        def write() -> None:
            for i in range(first, first + 6):
                assign(client, shop, "points-q4", f"u{i}")
            post_ok(client, "/v1/outcomes", {"outcomes": [_outcome(f"u{i}", metric) for i in range(first, first + 6)]}, shop)
        return write

    # Between the read's count of users and its totals. Binary: the newcomers' conversions would
    # outnumber the users counted. Continuous: their totals would count, and the users without one turn negative.
    for metric, first in (("conversion", 1), ("spend", 7)):
        with before_first("SELECT arm, COUNT(*), SUM(", newcomers(first, metric)) as done:
            resp = client.get(f"/v1/experiments/points-q4/results?metric={metric}", headers=analyst)
        assert done and resp.status_code == 200, resp.get_data(as_text=True)
        arms = resp.get_json()["arms"]
        assert sum(a["users"] for a in arms) == first and sum(a["total"] for a in arms) == (1 if metric == "conversion" else 0), arms
    after = get_ok(client, "/v1/experiments/points-q4/results?metric=spend", analyst)
    assert sum(a["users"] for a in after["arms"]) == 13 and sum(a["total"] for a in after["arms"]) == 6 * 5


def _outcome(user: str, metric: str) -> dict[str, Any]:
    return {"outcome_id": f"o-{user}", "experiment": "points-q4", "user_id": user, "metric": metric, "value": 1 if metric == "conversion" else 5}


def test_users_exposed_during_a_retention_read_are_counted_in_all_of_it_or_none(client, auth):
    shop, analyst = auth("storefront"), auth("analyst")
    running(client, auth("editor"), ab_definition(weights=(1, 1)))
    now = time.time()
    assign(client, shop, "points-q4", "r0", timestamp=iso(now - 10 * DAY))

    def returning_newcomers() -> None:
        events = [{"event_id": f"r{i}-back", "user_id": f"r{i}", "item_id": "i1", "type": "view", "timestamp": iso(now - 8.5 * DAY)} for i in range(1, 7)]
        post_ok(client, "/v1/events", {"events": events}, shop)
        for i in range(1, 7):
            assign(client, shop, "points-q4", f"r{i}", timestamp=iso(now - 10 * DAY))

    with before_first("SELECT arm, k, COUNT(DISTINCT user_id)", returning_newcomers) as done:
        resp = client.get("/v1/experiments/points-q4/results/retention?days=3", headers=analyst)
    assert done and resp.status_code == 200, resp.get_data(as_text=True)
    for arm in resp.get_json()["arms"]:
        for day in arm["days"]:
            assert day["active"] <= day["eligible"], arm
    assert sum(arm["days"][0]["eligible"] for arm in resp.get_json()["arms"]) == 1
    later = get_ok(client, "/v1/experiments/points-q4/results/retention?days=3", analyst)
    assert sum(arm["days"][0]["active"] for arm in later["arms"]) == 6
