"""Layers and targeting through a real gunicorn with several workers."""
from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from tests.experiment_helpers import ab_definition
from tests.server import gunicorn

USERS = 10_000


def _assign_many(base: str, key: str, users: range, flip: bool = False) -> list[list[dict]]:
    """POST /v1/assignments (left, right, gold) for each user; odd users are gold members unless `flip`."""
    answers = []
    for u in users:
        tier = "gold" if (u % 2 == 1) != flip else "silver"
        body = json.dumps({"user_id": f"g{u}", "experiments": ["left", "right", "gold"], "attributes": {"tier": tier}}).encode()
        request = urllib.request.Request(f"{base}/v1/assignments", data=body, method="POST", headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            answers.append(json.loads(resp.read())["assignments"])
    return answers


def test_two_halves_of_a_layer_never_share_a_user_and_cover_it(config, app, keys):
    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}
    with gunicorn(env, workers=3) as server:
        for key in ("left", "right"):
            assert server.request("POST", "/v1/experiments", ab_definition(key=key, layer="checkout", traffic=0.5), key=keys["editor"])[0] == 201
            assert server.request("POST", f"/v1/experiments/{key}/start", key=keys["editor"])[0] == 200
        assert server.request("POST", "/v1/experiments", ab_definition(key="third", layer="checkout", traffic=0.1), key=keys["editor"])[0] == 201
        assert server.request("POST", "/v1/experiments/third/start", key=keys["editor"])[0] == 409
        gold = ab_definition(key="gold", targeting={"all": [{"attribute": "tier", "op": "eq", "value": "gold"}]})
        assert server.request("POST", "/v1/experiments", gold, key=keys["editor"])[0] == 201
        assert server.request("POST", "/v1/experiments/gold/start", key=keys["editor"])[0] == 200
        chunks = [range(start, min(start + 1000, USERS)) for start in range(0, USERS, 1000)]
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = [a for part in pool.map(lambda r: _assign_many(server.base, keys["storefront"], r), chunks) for a in part]
        assert len(answers) == USERS
        enrolled = [[a["enrolled"] for a in trio] for trio in answers]
        assert all(trio[0] + trio[1] == 1 for trio in enrolled)  # never both halves, never neither
        left = sum(trio[0] for trio in enrolled)
        assert 0.47 * USERS < left < 0.53 * USERS
        assert [trio[2] for trio in enrolled] == [u % 2 == 1 for u in range(USERS)]
        assert {trio[2]["reason"] for trio in answers if not trio[2]["enrolled"]} == {"targeting"}
        # Asked again from any worker, with every member's tier flipped, exposed users keep their arms.
        again = _assign_many(server.base, keys["storefront"], range(0, 200), flip=True)
        for before, after in zip(answers[:200], again):
            assert [a["arm"] for a in after[:2]] == [a["arm"] for a in before[:2]]
            assert after[2]["arm"] == before[2]["arm"] if before[2]["enrolled"] else after[2]["enrolled"] is True
        status, layer = server.request("GET", "/v1/layers/checkout", key=keys["analyst"])
        assert status == 200 and layer["free"] == 0.0
