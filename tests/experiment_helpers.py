"""Builders for experiment tests."""
from __future__ import annotations

import copy
import time
from typing import Any

from tests.helpers import iso, post_ok

SCHEDULES = {
    "control": {"type": "per_unit", "points_per_unit": 1},
    "every5": {"type": "fixed_ratio", "every": 5, "points": 100},
    "lottery": {"type": "variable_ratio", "mean": 5, "points": 100},
}


def ab_definition(key: str = "points-q4", weights: tuple[float, ...] = (1, 1, 1), **extra: Any) -> dict[str, Any]:
    """A three-arm A/B test over reward schedules with a binary and a continuous metric."""
    # A copy of each schedule: a test that edits its definition must not edit every later test's.
    arms = [{"key": name, "weight": w, "payload": {"label": name}, "schedule": copy.deepcopy(SCHEDULES[name])} for name, w in zip(SCHEDULES, weights)]
    body = {
        "key": key,
        "name": "Q4 points",
        "type": "ab",
        "arms": arms,
        "metrics": [{"key": "conversion", "kind": "binary"}, {"key": "spend", "kind": "continuous"}],
        "primary_metric": "conversion",
    }
    body.update(extra)
    return body


def bandit_definition(key: str = "bonus-bandit", algorithm: str = "thompson", arms: int = 3, **extra: Any) -> dict[str, Any]:
    """A bandit over `arms` fixed-ratio schedules, learning from binary conversions."""
    body = {
        "key": key,
        "name": "Bonus bandit",
        "type": "bandit",
        "arms": [{"key": f"arm{i}", "schedule": {"type": "fixed_ratio", "every": i + 2, "points": 50}} for i in range(arms)],
        "metrics": [{"key": "conversion", "kind": "binary"}],
        "primary_metric": "conversion",
        "bandit": {"algorithm": algorithm, "min_probability": 0.01},
    }
    body.update(extra)
    return body


def running(client: Any, editor: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Create and start an experiment."""
    post_ok(client, "/v1/experiments", body, editor, status=201)
    return post_ok(client, f"/v1/experiments/{body['key']}/start", None, editor)


def assign(client: Any, storefront: dict[str, str], key: str, user: str, **params: str) -> dict[str, Any]:
    """GET the assignment and insist on 200."""
    resp = client.get(f"/v1/experiments/{key}/assignment", query_string={"user_id": user, **params}, headers=storefront)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()  # type: ignore[no-any-return]


def no_conversions_in_every5(client: Any, editor: dict[str, str], storefront: dict[str, str]) -> dict[str, list[str]]:
    """points-q4 with purchase_conversion as its guardrail: 40 users split between control and every5, half of
    each bought before exposure (CUPED's covariate), two in three of control after it, nobody in every5."""
    running(client, editor, ab_definition(weights=(1, 1, 0.000001), guardrails=["purchase_conversion"]))
    users: dict[str, list[str]] = {"control": [], "every5": []}
    for u in range(40):
        users[assign(client, storefront, "points-q4", f"g{u}")["arm"]].append(f"g{u}")
    events = []
    for arm, members in users.items():
        for i, user in enumerate(members):
            if i % 2 == 0:
                events.append({"event_id": f"pre-{user}", "user_id": user, "item_id": "i", "type": "purchase", "value": 5.0, "timestamp": iso(time.time() - 5 * 86400)})
            if arm == "control" and i % 3 != 2:
                events.append({"event_id": f"post-{user}", "user_id": user, "item_id": "i", "type": "purchase", "value": 5.0})
    post_ok(client, "/v1/events", {"events": events}, storefront)
    return users
