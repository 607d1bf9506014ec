"""Two gunicorn servers on one database, as two hosts behind a load balancer: they agree on models, arms and the experiment's lifecycle.

Key revocation across the same two hosts is in test_key_revocation.py.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from service.store.tables import ExposureRow
from service.usecases.experiment_cache import STATUS_SECONDS
from tests.experiment_helpers import ab_definition
from tests.helpers import post_ok, train, two_tribes
from tests.server import gunicorn


def test_activation_rollback_and_assignment_agree_across_hosts(config, app, client, auth, keys, db):
    two_tribes(client, auth("storefront"))
    first = train(client, auth("editor"))["version"]
    second = train(client, auth("editor"), {"algorithm": "item_knn", "activate": False})["version"]
    post_ok(client, "/v1/experiments", ab_definition(), auth("editor"), status=201)
    post_ok(client, "/v1/experiments/points-q4/start", None, auth("editor"))
    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}
    with gunicorn(env, workers=2) as host_a, gunicorn(env, workers=2) as host_b:
        shop = keys["storefront"]

        def version_on(host) -> set[str]:
            return {host.request("GET", "/v1/users/ua1/recommendations?n=3", key=shop)[1]["model_version"] for _ in range(8)}

        assert version_on(host_a) == version_on(host_b) == {first}
        assert host_a.request("POST", f"/v1/models/{second}/activate", key=keys["editor"])[0] == 200
        assert version_on(host_a) == version_on(host_b) == {second}
        assert host_b.request("POST", f"/v1/models/{first}/activate", key=keys["editor"])[0] == 200  # a rollback from the other host
        assert version_on(host_a) == version_on(host_b) == {first}

        # Both hosts race on the first exposure of the same users: one exposure each, one arm everywhere.
        users = [f"racer-{u}" for u in range(60)]

        def expose(args):
            host, user = args
            return user, host.request("GET", f"/v1/experiments/points-q4/assignment?user_id={user}", key=shop)[1]["arm"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(expose, [(h, u) for u in users for h in (host_a, host_b, host_a, host_b)]))
        arms: dict[str, set[str]] = {}
        for user, arm in answers:
            arms.setdefault(user, set()).add(arm)
        assert all(len(seen) == 1 for seen in arms.values())

        # A pause on one host reaches every worker of the other at once: exposed users keep their arm, and the
        # write that would enrol a new user checks the stored status and revision.
        def assignment_on(host, user: str) -> set[tuple]:
            answers = [host.request("GET", f"/v1/experiments/points-q4/assignment?user_id={user}", key=shop)[1] for _ in range(8)]
            return {(a["enrolled"], a["arm"], a["reason"]) for a in answers}

        racer = users[0]
        assert host_a.request("POST", "/v1/experiments/points-q4/pause", key=keys["editor"])[0] == 200
        assert assignment_on(host_b, racer) == assignment_on(host_a, racer) == {(True, arms[racer].pop(), None)}
        assert assignment_on(host_b, "after-pause") == assignment_on(host_a, "after-pause") == {(False, None, "not_running")}
        # A stop reaches the workers that remember the user's arm within STATUS_SECONDS (each trusts a status it read that long).
        assert host_b.request("POST", "/v1/experiments/points-q4/stop", key=keys["editor"])[0] == 200
        time.sleep(STATUS_SECONDS)
        assert assignment_on(host_a, racer) == assignment_on(host_b, racer) == {(False, None, "not_running")}
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow).where(ExposureRow.user_id.like("racer-%"))) == len(users)
