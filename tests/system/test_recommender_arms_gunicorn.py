"""Recommender arms through a real gunicorn: whichever worker answers, a user gets exactly their arm's model's answer."""
from __future__ import annotations

from tests.helpers import post_ok, train, two_tribes
from tests.server import gunicorn


def test_users_in_each_arm_get_their_arms_model_on_every_worker(config, app, client, auth, keys):
    two_tribes(client, auth("storefront"))
    als = train(client, auth("editor"))["version"]
    knn = train(client, auth("editor"), {"algorithm": "item_knn", "activate": False})["version"]
    arms = [{"key": "als", "payload": {"recommender": {"model_version": als}}}, {"key": "knn", "payload": {"recommender": {"model_version": knn}}}]
    post_ok(client, "/v1/experiments", {"key": "recs", "name": "ALS or kNN", "arms": arms, "metrics": [{"key": "clicked"}]}, auth("editor"), status=201)
    post_ok(client, "/v1/experiments/recs/start", None, auth("editor"))
    users = [f"u{t}{i}" for t in "ab" for i in range(30)]
    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}
    with gunicorn(env, workers=3) as server:
        shop = keys["storefront"]

        def ask(path: str) -> dict:
            status, body = server.request("GET", path, key=shop)
            assert status == 200, body
            return body

        expected = {}
        for version in (knn, als):  # what each model answers each user, read with that model active
            assert server.request("POST", f"/v1/models/{version}/activate", key=keys["editor"])[0] == 200
            expected[version] = {u: ask(f"/v1/users/{u}/recommendations?n=5")["items"] for u in users}
        served = {u: ask(f"/v1/users/{u}/recommendations?n=5&experiment=recs") for u in users}
        # Each request opens a new connection, so these land on every worker, and in a different order.
        for _ in range(3):
            for u in reversed(users):
                again = ask(f"/v1/users/{u}/recommendations?n=5&experiment=recs")
                assert again == served[u]
        assert {a["arm"] for a in served.values()} == {"als", "knn"}
        for u, answer in served.items():
            version = als if answer["arm"] == "als" else knn
            assert (answer["model_version"], answer["items"]) == (version, expected[version][u])
