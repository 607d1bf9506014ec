"""The role matrix: each role against each endpoint group, and key management."""
from __future__ import annotations

import pytest

from service.usecases.keys import ROLES

# One representative call per endpoint group, with a body that is valid for it.
GROUPS = {
    "storefront": [
        ("POST", "/v1/events", {"events": []}),
        ("POST", "/v1/items", {"items": []}),
        ("GET", "/v1/items/popular", None),
        ("GET", "/v1/users/u1/recommendations", None),
        ("POST", "/v1/outcomes", {"outcomes": []}),
    ],
    "editor": [("GET", "/v1/models", None)],
    "experiments-read": [("GET", "/v1/experiments", None), ("GET", "/v1/layers/checkout", None), ("GET", "/v1/users/at-risk", None)],
    # Of an experiment that does not exist: a role that may read results learns that (404), others are refused first.
    "analyst": [
        ("GET", "/v1/experiments/nope/results", None), ("GET", "/v1/experiments/nope/results.csv", None),
        ("GET", "/v1/experiments/nope/results/retention", None), ("GET", "/v1/experiments/nope/results/daily", None),
        ("POST", "/v1/experiments/nope/evaluate", {"allocation": "best_arm"}),
    ],
    "admin": [("GET", "/v1/keys", None)],
}
# Editors write experiments and analysts read them; both may read them, layers and users at risk. Results are the analyst's.
EXTRA_ALLOWED: dict[str, set[str]] = {"experiments-read": {"editor", "analyst"}}


def allowed(role: str, group: str) -> bool:
    return role in ("admin", group) or role in EXTRA_ALLOWED.get(group, set())


CASES = [(role, group, call) for group, calls in GROUPS.items() for call in calls for role in ROLES]


@pytest.mark.parametrize("role, group, call", CASES, ids=[f"{r}-{c[0]}-{c[1]}" for r, g, c in CASES])
def test_role_matrix(client, auth, role, group, call):
    method, path, body = call
    resp = client.open(path, method=method, json=body, headers=auth(role))
    expected = (404 if group == "analyst" else 200) if allowed(role, group) else 403
    assert resp.status_code == expected, resp.get_json()
    if expected == 403:
        assert resp.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("method, path, body", [c for calls in GROUPS.values() for c in calls])
def test_no_key_or_unknown_key_is_401(client, method, path, body):
    for headers in ({}, {"Authorization": "Bearer sl_nope"}, {"Authorization": "Basic abc"}):
        resp = client.open(path, method=method, json=body, headers=headers)
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"] == ('Bearer error="invalid_token"' if "Bearer" in headers.get("Authorization", "") else "Bearer")


def test_keys_are_stored_hashed(db, keys):
    from sqlalchemy import select

    from service.store.tables import ApiKeyRow

    with db.read() as session:
        stored = session.scalars(select(ApiKeyRow.key_hash)).all()
    assert stored and not set(stored) & set(keys.values())
    assert all(len(h) == 64 for h in stored)


def test_admin_creates_lists_and_revokes_keys(client, auth):
    created = client.post("/v1/keys", json={"role": "analyst", "name": "notebook"}, headers=auth("admin"))
    assert created.status_code == 201
    new = created.get_json()
    assert new["key"].startswith("sl_") and new["role"] == "analyst"
    listed = client.get("/v1/keys", headers=auth("admin")).get_json()["keys"]
    assert any(k["id"] == new["id"] and "key" not in k for k in listed)
    analyst = {"Authorization": f"Bearer {new['key']}"}
    assert client.get("/v1/models", headers=analyst).status_code == 403  # authenticated, wrong role
    for spelled_otherwise in (f"0{new['id']}", f"+{new['id']}", f"{new['id']}.0"):  # not an id that was answered
        assert client.delete(f"/v1/keys/{spelled_otherwise}", headers=auth("admin")).status_code == 404
    assert client.get("/v1/models", headers=analyst).status_code == 403
    revoked = client.delete(f"/v1/keys/{new['id']}", headers=auth("admin"))
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    assert client.get("/v1/models", headers=analyst).status_code == 401
    assert client.delete("/v1/keys/999999", headers=auth("admin")).status_code == 404


def test_creating_a_key_with_an_unknown_role_is_422(client, auth):
    resp = client.post("/v1/keys", json={"role": "root"}, headers=auth("admin"))
    assert resp.status_code == 422
    assert resp.get_json()["error"]["details"][0]["field"] == "role"


# These endpoints check the key inside their first read; a bad key must still win over every other answer.
KEY_IN_READ = [
    ("/v1/users/ua1/recommendations", "/v1/users/" + "x" * 200 + "/recommendations"),
    ("/v1/items/popular", None),
    ("/v1/items/a1/similar", "/v1/items/" + "x" * 200 + "/similar"),
]


@pytest.mark.parametrize("with_model", [False, True], ids=["no-model", "active-model"])
@pytest.mark.parametrize("path, bad_path", KEY_IN_READ, ids=["recommendations", "popular", "similar"])
def test_a_key_checked_inside_the_first_read_is_refused_before_anything_else(client, auth, with_model, path, bad_path):
    from tests.helpers import train, two_tribes

    two_tribes(client, auth("storefront"))
    if with_model:
        assert train(client, auth("editor"))["status"] == "ready"
    created = client.post("/v1/keys", json={"role": "storefront"}, headers=auth("admin")).get_json()
    fresh = {"Authorization": f"Bearer {created['key']}"}
    unknown = {"Authorization": "Bearer sl_nope"}
    assert client.get(path, headers=fresh).status_code == 200
    assert client.get(path, headers=auth("admin")).status_code == 200
    assert client.get(path + "?n=0", headers=fresh).status_code == 422
    for url in (path, path + "?n=0", bad_path or path + "?n=many"):
        assert client.get(url, headers=unknown).get_json()["error"]["code"] == "unauthorized"
        assert client.get(url, headers=auth("editor")).get_json()["error"]["code"] == "forbidden"
    if "similar" in path:  # an item nobody knows: 404 for a good key, 401 for a bad one
        assert client.get("/v1/items/nothing/similar", headers=fresh).status_code == 404
        assert client.get("/v1/items/nothing/similar", headers=unknown).status_code == 401
    assert client.delete(f"/v1/keys/{created['id']}", headers=auth("admin")).status_code == 200
    assert client.get(path, headers=fresh).status_code == 401


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_assignment_checks_the_key_inside_its_first_read_and_still_refuses_first(client, auth, db, method):
    from sqlalchemy import func, select

    from service.store.tables import ExposureRow
    from tests.experiment_helpers import ab_definition, running

    running(client, auth("editor"), ab_definition())
    created = client.post("/v1/keys", json={"role": "storefront"}, headers=auth("admin")).get_json()
    fresh = {"Authorization": f"Bearer {created['key']}"}

    def call(headers, experiment="points-q4", user="u1"):
        if method == "GET":
            return client.get(f"/v1/experiments/{experiment}/assignment?user_id={user}", headers=headers)
        return client.post("/v1/assignments", json={"user_id": user, "experiments": [experiment, experiment]}, headers=headers)

    assert call(fresh).status_code == 200
    assert call(fresh, experiment="nothing").status_code == 404
    assert call(fresh, user="").status_code == 422
    for headers in ({"Authorization": "Bearer sl_nope"}, auth("editor")):
        for answer in (call(headers), call(headers, experiment="nothing"), call(headers, user="")):
            assert answer.status_code in (401, 403) and answer.get_json()["error"]["code"] in ("unauthorized", "forbidden")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow)) == 1  # refused calls exposed nobody
    assert client.delete(f"/v1/keys/{created['id']}", headers=auth("admin")).status_code == 200
    assert call(fresh).status_code == 401


def test_the_last_admin_key_cannot_be_revoked_so_keys_stay_manageable(client, auth, db):
    from service.usecases.keys import list_keys

    admins = [k.id for k in list_keys(db) if k.role == "admin"]
    assert len(admins) == 1
    refused = client.delete(f"/v1/keys/{admins[0]}", headers=auth("admin"))
    assert refused.status_code == 409 and "last admin key" in refused.get_json()["error"]["message"]
    assert client.get("/v1/keys", headers=auth("admin")).status_code == 200  # unchanged
    second = client.post("/v1/keys", json={"role": "admin", "name": "second"}, headers=auth("admin")).get_json()
    other = {"Authorization": f"Bearer {second['key']}"}
    assert client.delete(f"/v1/keys/{admins[0]}", headers=other).status_code == 200
    assert client.delete(f"/v1/keys/{second['id']}", headers=other).status_code == 409
    assert client.get("/v1/keys", headers=other).status_code == 200


def test_two_admins_revoking_each_other_at_once_leave_one_admin_key(app, db):
    import threading

    from service.usecases.keys import create_key, list_keys

    made = [create_key(db, "admin", f"admin {i}") for i in range(2)]
    answers: list[int] = []
    start = threading.Barrier(2)

    def revoke(mine: int, theirs: int) -> None:
        client = app.test_client()
        start.wait()
        answers.append(client.delete(f"/v1/keys/{made[theirs][0].id}", headers={"Authorization": f"Bearer {made[mine][1]}"}).status_code)

    threads = [threading.Thread(target=revoke, args=(i, 1 - i)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) in ([200, 401], [200, 409])  # the second either finds its own key revoked or the other's the last
    assert len([k for k in list_keys(db) if k.role == "admin" and k.revoked_at is None]) == 1
