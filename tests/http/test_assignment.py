"""Assignment through HTTP: stickiness, traffic, lifecycle, concurrent first exposures, bandits."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
from sqlalchemy import func, select

from experiments.assignment import enrolled
from service.http.app import create_app
from service.store.experiments import Stamp
from service.store.exposures import Exposure
from service.store.tables import BanditArmStatsRow, ExperimentRow, ExposureRow
from service.usecases.experiment_cache import ExperimentCache
from tests.experiment_helpers import ab_definition, assign, bandit_definition, running
from tests.helpers import post_ok


def test_assignment_is_sticky_and_records_one_exposure(client, auth, db):
    running(client, auth("editor"), ab_definition())
    first = assign(client, auth("storefront"), "points-q4", "u1")
    assert first["enrolled"] and first["arm"] in ("control", "every5", "lottery")
    assert first["payload"] == {"label": first["arm"]} and first["schedule"]["type"]
    assert first["probability"] == 1 / 3 and first["exposed_at"].endswith("Z")
    for _ in range(3):
        assert assign(client, auth("storefront"), "points-q4", "u1") == first
    with db.read() as session:
        rows = session.scalars(select(ExposureRow)).all()
    assert [(r.user_id, r.arm) for r in rows] == [("u1", first["arm"])]


def test_head_enrols_nobody(client, auth, db):
    # werkzeug answers HEAD by running the GET view; a link checker must not enrol anyone.
    running(client, auth("editor"), ab_definition())
    for path in ("/v1/experiments/points-q4/assignment?user_id=u1", "/v1/users/u1/recommendations?experiment=points-q4"):
        for refused in (client.head(path, headers=auth("storefront")), client.post(path, headers=auth("storefront"))):
            assert refused.status_code == 405
            assert refused.headers["Allow"] == "GET, OPTIONS"  # the same on every 405, HEAD never
        assert client.post(path, headers=auth("storefront")).get_json()["error"]["code"] == "method_not_allowed"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow)) == 0
    assert assign(client, auth("storefront"), "points-q4", "u1")["enrolled"]


def test_arms_follow_the_weights_over_http(client, auth, db):
    running(client, auth("editor"), ab_definition(weights=(2, 1, 1)))
    arms = [assign(client, auth("storefront"), "points-q4", f"user-{i}")["arm"] for i in range(1200)]
    shares = {a: arms.count(a) / len(arms) for a in set(arms)}
    # Each experiment draws a fresh salt, so allow 5 standard errors (a flake rate below 1e-6).
    assert abs(shares["control"] - 0.5) < 5 * (0.25 / 1200) ** 0.5
    assert abs(shares["every5"] - 0.25) < 5 * (0.1875 / 1200) ** 0.5


def test_traffic_share_is_respected(client, auth):
    running(client, auth("editor"), ab_definition(traffic=0.3))
    answers = [assign(client, auth("storefront"), "points-q4", f"u{i}") for i in range(1000)]
    inside = [a for a in answers if a["enrolled"]]
    assert abs(len(inside) / len(answers) - 0.3) < 5 * (0.21 / 1000) ** 0.5  # fresh salt: 5 standard errors
    outside = next(a for a in answers if not a["enrolled"])
    assert outside["arm"] is None and outside["reason"] == "traffic"


def test_paused_keeps_exposed_users_and_stopped_enrols_nobody(client, auth):
    editor, shop = auth("editor"), auth("storefront")
    post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    assert assign(client, shop, "points-q4", "early") == {"experiment": "points-q4", "user_id": "early", "enrolled": False, "arm": None, "payload": None, "schedule": None, "probability": None, "reason": "not_running", "exposed_at": None}
    post_ok(client, "/v1/experiments/points-q4/start", None, editor)
    exposed = assign(client, shop, "points-q4", "u1")
    post_ok(client, "/v1/experiments/points-q4/pause", None, editor)
    assert assign(client, shop, "points-q4", "u1")["arm"] == exposed["arm"]
    assert assign(client, shop, "points-q4", "newcomer")["reason"] == "not_running"
    post_ok(client, "/v1/experiments/points-q4/stop", None, editor)
    stopped = assign(client, shop, "points-q4", "u1")
    assert not stopped["enrolled"] and stopped["reason"] == "not_running"


@pytest.fixture
def trusting(app):
    """This worker trusts every status it reads for the whole test, so the remembered paths run however slow the machine."""
    app.extensions["stickyloop"].experiment_cache = ExperimentCache(status_seconds=3600)


@contextmanager
def second_worker(app):
    """Another app on the same database: a second worker, with caches of its own."""
    other_app = create_app(app.extensions["stickyloop"].config)
    try:
        yield other_app.test_client()
    finally:
        other_app.extensions["stickyloop"].db.dispose()


def test_a_user_exposed_by_another_worker_keeps_their_first_exposure(app, trusting, client, auth, db):
    # This worker trusts its recent read of the running experiment and writes a new user's exposure
    # in one statement; for a user another worker exposed first, that statement answers the stored row.
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    assign(client, shop, "points-q4", "warm")
    with second_worker(app) as other:
        first = assign(other, shop, "points-q4", "elsewhere", timestamp="2026-01-05T00:00:00Z")
    again = assign(client, shop, "points-q4", "elsewhere", timestamp="2026-03-01T00:00:00Z")
    assert again == first and first["exposed_at"] == "2026-01-05T00:00:00Z"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow).where(ExposureRow.user_id == "elsewhere")) == 1


def test_a_stop_elsewhere_enrols_nobody_at_once_and_ends_every_arm_within_the_bound(app, trusting, client, auth, db):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    exposed = assign(client, shop, "points-q4", "u1")
    with second_worker(app) as other:
        post_ok(other, "/v1/experiments/points-q4/stop", None, auth("editor"))
    assert assign(client, shop, "points-q4", "u1") == exposed  # within the bound, a remembered arm still answers
    assert [assign(client, shop, "points-q4", f"late-{i}")["reason"] for i in range(20)] == ["not_running"] * 20
    with db.read() as session:
        assert set(session.scalars(select(ExposureRow.user_id))) == {"u1"}
    assert assign(client, shop, "points-q4", "u1")["reason"] == "not_running"  # the refused write read the stop


def test_a_trusted_status_expires_after_its_bound(app, client, auth):
    shop = auth("storefront")
    services = app.extensions["stickyloop"]
    services.experiment_cache = ExperimentCache(status_seconds=0.2)
    running(client, auth("editor"), ab_definition())
    assign(client, shop, "points-q4", "u1")
    with second_worker(app) as other:
        post_ok(other, "/v1/experiments/points-q4/stop", None, auth("editor"))
    time.sleep(0.2)
    assert assign(client, shop, "points-q4", "u1")["reason"] == "not_running"


def test_a_key_re_created_elsewhere_is_served_by_its_new_definition(app, trusting, client, auth, db):
    # Revisions start again at 1 for a new experiment, so only the salt tells it from the deleted draft.
    shop, editor = auth("storefront"), auth("editor")
    post_ok(client, "/v1/experiments", ab_definition(), editor, status=201)
    assert client.patch("/v1/experiments/points-q4", json={"description": "v2"}, headers=editor).status_code == 200  # revision 2
    client.get("/v1/experiments/points-q4/results", headers=auth("analyst"))  # this worker parses the draft at revision 2
    with second_worker(app) as other:
        assert other.delete("/v1/experiments/points-q4", headers=editor).status_code == 204
        renamed = ab_definition()
        renamed["arms"] = [{**arm, "key": f"new-{arm['key']}"} for arm in renamed["arms"]]
        running(other, editor, renamed)  # created at revision 1, started: revision 2
    answers = [assign(client, shop, "points-q4", f"user-{i}") for i in range(30)]
    assert {a["arm"] for a in answers} <= {"new-control", "new-every5", "new-lottery"} and all(a["enrolled"] for a in answers)


def test_a_draft_deleted_elsewhere_is_unknown_at_once(app, trusting, client, auth, db):
    shop, editor = auth("storefront"), auth("editor")
    running(client, editor, ab_definition())
    post_ok(client, "/v1/experiments", ab_definition(key="draft-one"), editor, status=201)
    assert assign(client, shop, "draft-one", "u9")["reason"] == "not_running"
    with second_worker(app) as other:
        assert other.delete("/v1/experiments/draft-one", headers=editor).status_code == 204
    assert client.post("/v1/assignments", json={"user_id": "u9", "experiments": ["points-q4", "draft-one"]}, headers=shop).status_code == 404
    assert client.get("/v1/experiments/draft-one/assignment", query_string={"user_id": "u9"}, headers=shop).status_code == 404
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow).where(ExposureRow.user_id == "u9")) == 0


def test_an_older_read_never_replaces_a_newer_stamp():
    memory = ExperimentCache()
    memory.changed("k", Stamp("stopped", 4, "salt"))  # this process stopped it
    memory.note("k", Stamp("running", 3, "salt"), time.monotonic() - 0.01)  # a read that began before the stop
    assert memory.stamp("k") == Stamp("stopped", 4, "salt")
    memory.note("k", Stamp("running", 1, "other salt"), time.monotonic())  # the key re-created
    assert memory.stamp("k") == Stamp("running", 1, "other salt")


def test_an_exposure_outlives_a_ramp_down_on_another_worker(app, trusting, client, auth, db):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    assign(client, shop, "points-q4", "warm")
    with db.read() as session:
        salt = session.scalar(select(ExperimentRow.salt))
    ramped, newcomer = [u for u in (f"user-{i}" for i in range(100)) if not enrolled(salt, "points-q4", u, 0.01)][:2]
    with second_worker(app) as other:
        before = assign(other, shop, "points-q4", ramped)
        assert other.patch("/v1/experiments/points-q4", json={"traffic": 0.01}, headers=auth("editor")).status_code == 200
    assert assign(client, shop, "points-q4", ramped) == before  # this worker never answered this user before
    assert assign(client, shop, "points-q4", newcomer)["reason"] == "traffic"


def test_the_exposure_memory_keeps_the_most_recently_used():
    memory = ExperimentCache(exposures_kept=2)
    seen = {user: Exposure(user, 0.5, 1.0) for user in ("a", "b", "c")}
    memory.remember("k", "a", seen["a"])
    memory.remember("k", "b", seen["b"])
    assert memory.exposure("k", "a") == seen["a"]  # now the most recent
    memory.remember("k", "c", seen["c"])
    assert [memory.exposure("k", u) for u in ("a", "b", "c")] == [seen["a"], None, seen["c"]]


def test_a_worker_holding_an_old_revision_never_enrols_by_it(app, trusting, client, auth, db):
    # Two apps on one database stand for two workers: this one caches the definition at traffic 1.0,
    # the other ramps traffic down to 1 %. New users asked of this one must be placed by 1 %.
    running(client, auth("editor"), ab_definition())
    assert assign(client, auth("storefront"), "points-q4", "warm")["enrolled"]
    with second_worker(app) as other:
        assert other.patch("/v1/experiments/points-q4", json={"traffic": 0.01}, headers=auth("editor")).status_code == 200
        answers = [assign(client, auth("storefront"), "points-q4", f"new-{i}") for i in range(200)]
        with db.read() as session:
            salt = session.scalar(select(ExperimentRow.salt))
            stored = set(session.scalars(select(ExposureRow.user_id).where(ExposureRow.user_id.like("new-%"))))
        expected = {f"new-{i}" for i in range(200) if enrolled(salt, "points-q4", f"new-{i}", 0.01)}
        assert {a["user_id"] for a in answers if a["enrolled"]} == stored == expected
        assert all(a["reason"] == "traffic" for a in answers if not a["enrolled"])
        post_ok(other, "/v1/experiments/points-q4/pause", None, auth("editor"))
    assert assign(client, auth("storefront"), "points-q4", "after-pause")["reason"] == "not_running"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow).where(ExposureRow.user_id == "after-pause")) == 0


def test_unknown_experiment_is_404_and_bad_query_is_422(client, auth):
    shop = auth("storefront")
    assert client.get("/v1/experiments/nope/assignment?user_id=u1", headers=shop).status_code == 404
    running(client, auth("editor"), ab_definition())
    resp = client.get("/v1/experiments/points-q4/assignment", headers=shop)
    assert resp.status_code == 422 and resp.get_json()["error"]["details"][0]["field"] == "query.user_id"
    resp = client.get("/v1/experiments/points-q4/assignment?user_id=u1&timestamp=2026-11-22T10:00:00", headers=shop)
    assert resp.status_code == 422


def test_batch_assignment_answers_in_order(client, auth):
    editor, shop = auth("editor"), auth("storefront")
    running(client, editor, ab_definition())
    post_ok(client, "/v1/experiments", ab_definition(key="draft-one"), editor, status=201)
    body = post_ok(client, "/v1/assignments", {"user_id": "u7", "experiments": ["points-q4", "draft-one"]}, shop)
    assert [a["experiment"] for a in body["assignments"]] == ["points-q4", "draft-one"]
    assert body["assignments"][0]["arm"] == assign(client, shop, "points-q4", "u7")["arm"]
    assert body["assignments"][1]["reason"] == "not_running"
    assert client.post("/v1/assignments", json={"user_id": "u7", "experiments": ["points-q4", "missing"]}, headers=shop).status_code == 404


def test_a_batch_naming_an_unknown_experiment_records_nothing(client, auth, db):
    editor, shop = auth("editor"), auth("storefront")
    running(client, editor, ab_definition())
    reply = client.post("/v1/assignments", json={"user_id": "u8", "experiments": ["points-q4", "missing"], "timestamp": "2026-01-01T00:00:00Z"}, headers=shop)
    assert reply.status_code == 404 and "missing" in reply.get_json()["error"]["message"]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow).where(ExposureRow.user_id == "u8")) == 0
    assert assign(client, shop, "points-q4", "u8")["exposed_at"] != "2026-01-01T00:00:00Z"


def test_concurrent_first_exposures_are_recorded_once(app, auth, db):
    client = app.test_client()
    running(client, auth("editor"), bandit_definition())
    shop = auth("storefront")

    def ask(i: int) -> str:
        return app.test_client().get(f"/v1/experiments/bonus-bandit/assignment?user_id=u{i % 25}", headers=shop).get_json()["arm"]

    with ThreadPoolExecutor(8) as pool:
        arms = list(pool.map(ask, range(200)))
    by_user: dict[str, set[str]] = {}
    for i, arm in enumerate(arms):
        by_user.setdefault(f"u{i % 25}", set()).add(arm)
    assert all(len(s) == 1 for s in by_user.values())
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow)) == 25
        assert session.scalar(select(func.sum(BanditArmStatsRow.pulls))) == 25


def test_lifecycle_moves_race_new_users_of_bandits_without_a_deadlock(app, auth, db):
    # On PostgreSQL an enrolment's foreign-key check shares the experiment's row with a pause or a
    # stop; they used to deadlock (503) when the move also wrote the arms' rows.
    editor, shop = auth("editor"), auth("storefront")
    for b in range(3):
        running(app.test_client(), editor, bandit_definition(key=f"bandit-{b}"))

    def ask(i: int) -> int:
        return app.test_client().get(f"/v1/experiments/bandit-{i % 3}/assignment?user_id=n{i}", headers=shop).status_code

    def move_all() -> list[int]:
        moving = app.test_client()
        return [moving.post(f"/v1/experiments/bandit-{b}/{action}", headers=editor).status_code for action in ("pause", "start", "stop") for b in range(3)]

    with ThreadPoolExecutor(8) as pool:
        moved = pool.submit(move_all)
        asked = pool.map(ask, range(600))
        assert set(asked) == {200} and moved.result() == [200] * 9
    with db.read() as session:
        exposures = session.scalar(select(func.count()).select_from(ExposureRow))
        assert session.scalar(select(func.sum(BanditArmStatsRow.pulls))) == exposures


def test_bandit_assignment_gives_the_propensity(client, auth):
    running(client, auth("editor"), bandit_definition(algorithm="epsilon_greedy", bandit={"algorithm": "epsilon_greedy", "epsilon": 0.3, "min_probability": 0.0}))
    answer = assign(client, auth("storefront"), "bonus-bandit", "u1")
    # No data: every arm is untried, so all are "best" and the allocation is uniform.
    assert answer["probability"] == np.float64(1 / 3)


@pytest.mark.parametrize("action", ["stop", "pause"])
def test_an_enrolment_in_flight_counts_before_a_stop_returns_or_not_at_all(app, auth, db, action):
    # A first exposure checks the experiment's status in the snapshot its statement began with. One held
    # up inside its statement (here: its arm's statistics row, locked as an outcome batch would) had
    # committed after a stop had returned, so results read after the stop later gained a user.
    editor, shop, analyst = auth("editor"), auth("storefront"), auth("analyst")
    running(app.test_client(), editor, bandit_definition(arms=2, bandit={"algorithm": "thompson", "min_probability": 0.4}))
    holder = db.engine.connect()
    holding = holder.begin()
    if db.is_sqlite:  # a write holds every other writer back
        holder.execute(BanditArmStatsRow.__table__.update().values(pulls=BanditArmStatsRow.pulls))
    else:
        holder.execute(select(BanditArmStatsRow).with_for_update())

    def users() -> int:
        body = app.test_client().get("/v1/experiments/bonus-bandit/results", headers=analyst).get_json()
        return sum(a["users"] for a in body["arms"])

    def change() -> int:
        assert app.test_client().post(f"/v1/experiments/bonus-bandit/{action}", headers=editor).status_code == 200
        return users()  # what an analyst reads the moment the change returns

    with ThreadPoolExecutor(2) as pool:
        assigned = pool.submit(lambda: app.test_client().get("/v1/experiments/bonus-bandit/assignment?user_id=late", headers=shop).get_json())
        time.sleep(0.3)  # the assignment's statement is under way, waiting for the arm's row
        changed = pool.submit(change)
        time.sleep(0.3)
        holding.rollback()
        holder.close()
        seen_at_change, answer = changed.result(timeout=30), assigned.result(timeout=30)
    assert users() == seen_at_change == (1 if answer["enrolled"] else 0)


def test_a_stop_held_back_past_its_bound_answers_503_and_changes_nothing(app, auth, db, monkeypatch):
    # On PostgreSQL a stop waits for the exposures table, and first exposures of every experiment queue
    # behind it meanwhile: past SETTLE_SECONDS it gives up rather than stall them. SQLite's writers
    # simply wait their turn.
    from service.store import settling
    from sqlalchemy import text

    monkeypatch.setattr(settling, "SETTLE_SECONDS", 1)
    client, editor = app.test_client(), auth("editor")
    running(client, editor, ab_definition())
    holder = db.engine.connect()
    holding = holder.begin()
    holder.execute(text("UPDATE exposures SET counted = counted") if db.is_sqlite else text("LOCK TABLE exposures IN ROW EXCLUSIVE MODE"))
    with ThreadPoolExecutor(1) as pool:
        stop = pool.submit(lambda: client.post("/v1/experiments/points-q4/stop", headers=editor))
        try:
            if db.is_sqlite:
                time.sleep(2.5)  # past the bound: SQLite's writer waits its turn however long it is held back
            else:
                answer = stop.result(timeout=30)  # it gives up by itself, while the lock is still held
        finally:
            holding.rollback()
            holder.close()
        if db.is_sqlite:
            assert stop.result(timeout=30).status_code == 200
            return
    assert answer.status_code == 503 and "nothing was changed, try again" in answer.get_json()["error"]["message"]
    assert client.get("/v1/experiments/points-q4", headers=editor).get_json()["status"] == "running"
    assert client.post("/v1/experiments/points-q4/stop", headers=editor).status_code == 200


def test_a_draft_deleted_while_it_is_changed_never_deadlocks(app, auth):
    editor = auth("editor")
    for round_ in range(12):
        app.test_client().post("/v1/experiments", json=ab_definition(key=f"race{round_}"), headers=editor)
        with ThreadPoolExecutor(2) as pool:
            deleted = pool.submit(lambda k=f"race{round_}": app.test_client().delete(f"/v1/experiments/{k}", headers=editor).status_code)
            patched = pool.submit(lambda k=f"race{round_}": app.test_client().patch(f"/v1/experiments/{k}", json={"name": "renamed"}, headers=editor).status_code)
            assert deleted.result(timeout=30) in (200, 204) and patched.result(timeout=30) in (200, 404)
