"""Recommender variants as experiment arms: each arm's users get its model's answers, exposures included."""
from __future__ import annotations

import pytest

from tests.helpers import get_ok, post_ok, train, two_tribes


def arms_over(versions: dict[str, dict]) -> list[dict]:
    return [{"key": name, "payload": {"recommender": spec}} for name, spec in versions.items()]


def experiment(arms: list[dict], key: str = "recs") -> dict:
    return {"key": key, "name": "Recommenders", "arms": arms, "metrics": [{"key": "clicked", "kind": "binary"}]}


@pytest.fixture
def two_models(client, auth):
    two_tribes(client, auth("storefront"))
    als = train(client, auth("editor"))
    knn = train(client, auth("editor"), {"algorithm": "item_knn", "activate": False})
    assert als["status"] == knn["status"] == "ready"
    return als["version"], knn["version"]


def test_each_arm_answers_from_its_model_and_records_the_exposure(client, auth, two_models):
    als, knn = two_models
    editor, shop = auth("editor"), auth("storefront")
    arms = {"als": {"model_version": als}, "knn": {"model_version": knn}, "pop": {"algorithm": "popularity"}, "pop-als": {"algorithm": "popularity", "model_version": als}}
    post_ok(client, "/v1/experiments", experiment(arms_over(arms)), editor, status=201)
    post_ok(client, "/v1/experiments/recs/start", None, editor)
    users = [f"u{t}{i}" for t in "ab" for i in range(15)]
    answers = {u: get_ok(client, f"/v1/users/{u}/recommendations?n=5&experiment=recs", shop) for u in users}
    assert {a["experiment"] for a in answers.values()} == {"recs"}
    plain = {u: get_ok(client, f"/v1/users/{u}/recommendations?n=5", shop) for u in users}  # the active model, als
    popular = get_ok(client, "/v1/items/popular?n=20", shop)["items"]
    post_ok(client, f"/v1/models/{knn}/activate", None, editor)
    by_knn = {u: get_ok(client, f"/v1/users/{u}/recommendations?n=5", shop) for u in users}
    for u, answer in answers.items():
        arm = get_ok(client, f"/v1/experiments/recs/assignment?user_id={u}", shop)["arm"]
        assert answer["arm"] == arm
        if arm == "als":
            assert (answer["model_version"], answer["items"]) == (als, plain[u]["items"])
        elif arm == "knn":
            assert (answer["model_version"], answer["items"]) == (knn, by_knn[u]["items"])
        else:
            assert (answer["strategy"], answer["model_version"]) == ("popular", als)  # the active version's counts, or the named one's
            ids = [i["item_id"] for i in answer["items"]]
            assert ids == [i["item_id"] for i in popular if i["item_id"] in ids][: len(ids)]
    # Activating another version moves nobody's arm off its model; `{"algorithm": "popularity"}` ranks by
    # the active version's counts (it now reads knn's), and naming a version holds it to that one's.
    again = {u: get_ok(client, f"/v1/users/{u}/recommendations?n=5&experiment=recs", shop) for u in users}
    for u, answer in answers.items():
        if answer["arm"] == "pop":
            assert again[u]["model_version"] == knn
        else:
            assert [again[u][k] for k in ("arm", "items", "model_version")] == [answer[k] for k in ("arm", "items", "model_version")]
    results = get_ok(client, "/v1/experiments/recs/results", auth("analyst"))
    assert sum(a["users"] for a in results["arms"]) == len(users)


def test_a_user_outside_the_experiment_gets_the_active_model(client, auth, two_models):
    als, knn = two_models
    post_ok(client, "/v1/experiments", {**experiment(arms_over({"als": {"model_version": als}, "knn": {"model_version": knn}})), "traffic": 0.0001}, auth("editor"), status=201)
    post_ok(client, "/v1/experiments/recs/start", None, auth("editor"))
    answer = get_ok(client, "/v1/users/ua1/recommendations?experiment=recs", auth("storefront"))
    assert (answer["arm"], answer["model_version"], answer["experiment"], answer["reason"]) == (None, als, "recs", "traffic")
    assert client.get("/v1/users/ua1/recommendations?experiment=nope", headers=auth("storefront")).status_code == 404


def test_request_attributes_target_a_recommender_experiment_as_they_do_an_assignment(client, auth, two_models):
    als, knn = two_models
    shop = auth("storefront")
    rule = {"all": [{"attribute": "country", "op": "eq", "value": "nl"}]}
    post_ok(client, "/v1/experiments", {**experiment(arms_over({"als": {"model_version": als}, "knn": {"model_version": knn}})), "targeting": rule}, auth("editor"), status=201)
    post_ok(client, "/v1/experiments/recs/start", None, auth("editor"))
    outside = get_ok(client, "/v1/users/ua1/recommendations?experiment=recs&attr.country=de", shop)
    assert (outside["arm"], outside["reason"], outside["model_version"]) == (None, "targeting", als)
    inside = get_ok(client, "/v1/users/ua2/recommendations?experiment=recs&attr.country=nl", shop)
    assert inside["arm"] in ("als", "knn") and inside["reason"] is None
    assert get_ok(client, "/v1/experiments/recs/assignment?user_id=ua2", shop)["arm"] == inside["arm"]  # the same exposure
    assert get_ok(client, "/v1/users/ua3/recommendations?attr.country=nl", shop)["arm"] is None  # without an experiment: ignored
    bad = client.get("/v1/users/ua3/recommendations?experiment=recs&attr." + "x" * 200 + "=1", headers=shop)
    assert bad.status_code == 422 and bad.get_json()["error"]["details"][0]["field"].startswith("query.attr.")
    # A worker remembers the query strings it accepted: a repeat reads the same attributes, a refusal is refused again.
    assert get_ok(client, "/v1/users/ua4/recommendations?experiment=recs&attr.country=de", shop)["reason"] == "targeting"
    assert get_ok(client, "/v1/users/ua5/recommendations?experiment=recs&attr.country=nl", shop)["reason"] is None
    again = client.get("/v1/users/ua3/recommendations?experiment=recs&attr." + "x" * 200 + "=1", headers=shop)
    assert again.status_code == 422 and again.get_json() == {**bad.get_json(), "error": {**bad.get_json()["error"], "request_id": again.get_json()["error"]["request_id"]}}


def test_starting_with_a_missing_or_failed_version_is_409(client, auth, two_models, db):
    import time

    from service.store.tables import ModelVersionRow

    with db.write() as session:
        session.add(ModelVersionRow(version="v-failed", status="failed", algorithm="als", params={}, matrix={}, evaluation={}, metrics={}, data={}, created_at=time.time()))
    for bad in ("v-missing", "v-failed"):
        key = f"recs-{bad}"
        post_ok(client, "/v1/experiments", experiment(arms_over({"a": {"model_version": two_models[0]}, "b": {"model_version": bad}}), key=key), auth("editor"), status=201)
        resp = client.post(f"/v1/experiments/{key}/start", headers=auth("editor"))
        assert resp.status_code == 409 and bad in resp.get_json()["error"]["message"]


def _ready_versions(db, *names: str) -> None:
    """Ready version rows without artifacts: a start reads only their status."""
    import time

    from service.store.tables import ModelVersionRow

    with db.write() as session:
        for name in names:
            session.add(ModelVersionRow(version=name, status="ready", algorithm="als", params={}, matrix={}, evaluation={}, metrics={}, data={}, created_at=time.time()))


def test_running_and_paused_experiments_serve_at_most_max_served_versions(client, auth, db, app):
    limit = app.extensions["stickyloop"].config.max_served_versions
    assert limit == 4
    _ready_versions(db, "v1", "v2", "v3", "v4", "v5")
    editor = auth("editor")

    def draft(key: str, *versions: str) -> None:
        arms = arms_over({f"arm-{v}": {"model_version": v} for v in versions} or {"one": {"algorithm": "popularity"}, "two": {"algorithm": "popularity"}})
        post_ok(client, "/v1/experiments", experiment(arms, key=key), editor, status=201)

    def start(key: str) -> int:
        return client.post(f"/v1/experiments/{key}/start", headers=editor).status_code

    for key, versions in {"a": ("v1", "v2"), "b": ("v2", "v3"), "c": ("v4", "v5"), "d": ("v1", "v4"), "pop": ()}.items():
        draft(key, *versions)
    assert (start("a"), start("b")) == (200, 200)  # v1, v2, v3
    refused = client.post("/v1/experiments/c/start", headers=editor)
    message = refused.get_json()["error"]["message"]
    assert refused.status_code == 409 and "3 model version(s) (v1, v2, v3)" in message and "add 2" in message and "limit of 4" in message
    assert get_ok(client, "/v1/experiments/c", editor)["status"] == "draft"
    assert start("d") == 200  # v4 makes four; naming v1 again adds nothing
    assert start("pop") == 200  # popularity of the active version pins nothing
    # A paused experiment still answers its exposed users from their arm, so its versions stay counted.
    post_ok(client, "/v1/experiments/b/pause", None, editor)
    assert start("c") == 409
    post_ok(client, "/v1/experiments/b/stop", None, editor)  # v3 freed; v2 still served by a
    assert start("c") == 200  # v1, v2, v4 and now v5
    draft("e", "v3", "v1")
    assert start("e") == 409
    post_ok(client, "/v1/experiments/d/pause", None, editor)
    draft("f", "v1", "v5")
    assert start("f") == 200  # at the limit, a start that adds no version is never refused
    assert start("d") == 200  # nor a resume that adds none


def test_a_paused_experiment_resumes_even_past_a_limit_lowered_since(client, auth, db, config):
    """Its versions were served all along (a paused experiment answers its exposed users from their arm):
    resuming adds none, whatever MAX_SERVED_VERSIONS says now."""
    import dataclasses

    from service.http.app import create_app

    _ready_versions(db, "v1", "v2", "v3", "v4")
    editor = auth("editor")
    for key, versions in {"a": ("v1", "v2"), "b": ("v3", "v4")}.items():
        post_ok(client, "/v1/experiments", experiment(arms_over({f"arm-{v}": {"model_version": v} for v in versions}), key=key), editor, status=201)
        post_ok(client, f"/v1/experiments/{key}/start", None, editor)
    post_ok(client, "/v1/experiments/b/pause", None, editor)
    lowered = create_app(dataclasses.replace(config, max_served_versions=2)).test_client()
    assert lowered.post("/v1/experiments/b/start", headers=editor).status_code == 200
    post_ok(lowered, "/v1/experiments", experiment(arms_over({"x": {"model_version": "v1"}, "y": {"model_version": "v3"}}), key="c"), editor, status=201)
    assert lowered.post("/v1/experiments/c/start", headers=editor).status_code == 200  # adds none either
    _ready_versions(db, "v5")
    post_ok(lowered, "/v1/experiments", experiment(arms_over({"x": {"model_version": "v1"}, "y": {"model_version": "v5"}}), key="d"), editor, status=201)
    assert lowered.post("/v1/experiments/d/start", headers=editor).status_code == 409  # a new version still is


def test_two_starts_racing_for_the_last_served_version_do_not_both_win(app, auth, db):
    import threading

    _ready_versions(db, "v1", "v2", "v3", "v4", "v5")
    editor = auth("editor")
    clients = [app.test_client() for _ in range(2)]
    post_ok(clients[0], "/v1/experiments", experiment(arms_over({"a": {"model_version": "v1"}, "b": {"model_version": "v2"}, "c": {"model_version": "v3"}}), key="base"), editor, status=201)
    post_ok(clients[0], "/v1/experiments/base/start", None, editor)
    for round_ in range(4):
        keys = [f"r{round_}-{k}" for k in range(2)]
        for k, key in enumerate(keys):  # each would be the fourth version on its own
            post_ok(clients[0], "/v1/experiments", experiment(arms_over({"x": {"model_version": "v1"}, "y": {"model_version": f"v{4 + k}"}}), key=key), editor, status=201)
        ready, codes = threading.Barrier(2), {}

        def start(k: int) -> None:
            ready.wait()
            codes[k] = clients[k].post(f"/v1/experiments/{keys[k]}/start", headers=editor).status_code

        threads = [threading.Thread(target=start, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes.values()) == [200, 409]
        winner = keys[0] if codes[0] == 200 else keys[1]
        post_ok(clients[0], f"/v1/experiments/{winner}/stop", None, editor)


@pytest.mark.parametrize("spec", [
    {"model_version": ""}, {"algorithm": "als"}, "popularity", {"model_version": True}, {"model_version": 123}, None,
    {"algorithm": "popularity", "model_version": ""}, {"algorithm": "popularity", "model_version": "v", "extra": 1}, {"model_version": "v\x00"},
])
def test_a_bad_recommender_payload_is_422(client, auth, spec):
    resp = client.post("/v1/experiments", json=experiment(arms_over({"a": {"algorithm": "popularity"}, "b": spec})), headers=auth("editor"))
    assert resp.status_code == 422 and resp.get_json()["error"]["details"][0]["field"] == "arms.1.payload.recommender"


def test_an_arm_whose_version_cannot_load_fails_only_its_new_users_and_stores_no_exposure_for_them(client, auth, db):
    """A user shown nothing (the arm's artifact lost on this host) must not count as exposed in the results;
    users of the other arm, and users the experiment does not enrol, are answered as before."""
    from sqlalchemy import select

    from service.store.tables import ExposureRow

    _ready_versions(db, "lost")  # ready, but no artifact anywhere
    editor = auth("editor")
    for key, traffic in (("broken", 1.0), ("sampled", 0.01)):
        body = {**experiment(arms_over({"a": {"algorithm": "popularity"}, "b": {"model_version": "lost"}}), key=key), "traffic": traffic}
        post_ok(client, "/v1/experiments", body, editor, status=201)
        post_ok(client, f"/v1/experiments/{key}/start", None, editor)
    statuses = {}
    for user in (f"u{i}" for i in range(40)):
        resp = client.get(f"/v1/users/{user}/recommendations?experiment=broken", headers=auth("storefront"))
        statuses[user] = resp.status_code
        if resp.status_code != 200:
            assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "unavailable", resp.get_json()
    with db.read() as session:
        stored = dict(session.execute(select(ExposureRow.user_id, ExposureRow.arm).where(ExposureRow.experiment_key == "broken")).all())
    assert set(stored.values()) == {"a"} and {u for u, s in statuses.items() if s == 200} == set(stored)
    assert 0 < len(stored) < 40  # both arms drew users: the broken arm's got 503 and no exposure
    # 1 % traffic: nearly every user is not enrolled, and gets the active model's answer whatever the arms hold.
    unenrolled = [client.get(f"/v1/users/v{i}/recommendations?experiment=sampled", headers=auth("storefront")).get_json() for i in range(30)]
    assert sum(1 for a in unenrolled if a.get("reason") == "traffic" and a["items"] is not None) >= 25
    # A draft's or a stopped experiment's arms serve nobody: their versions are not loaded, and may be gone.
    post_ok(client, "/v1/experiments", experiment(arms_over({"a": {"algorithm": "popularity"}, "b": {"model_version": "lost"}}), key="drafted"), editor, status=201)
    post_ok(client, "/v1/experiments/broken/stop", None, editor)
    for key in ("drafted", "broken"):
        answer = get_ok(client, f"/v1/users/u1/recommendations?experiment={key}", auth("storefront"))
        assert answer["arm"] is None and answer["reason"] == "not_running"
