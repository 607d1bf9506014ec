"""The command line: init-db (twice, and concurrently), create-key, train."""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.store.migrate import current_revision, head_revision
from service.usecases.keys import KeyVerifier, list_keys
from tests.experiment_helpers import ab_definition, running
from tests.helpers import get_ok, two_tribes

ROOT = Path(__file__).resolve().parents[2]


def test_init_db_twice_is_harmless(runner, db):
    first = runner.invoke(args=["init-db"])
    second = runner.invoke(args=["init-db"])
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "already current" in second.output
    assert current_revision(db) == head_revision()


def test_init_db_from_several_processes_at_once(tmp_path):
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "DATABASE_URL": url, "MODEL_DIR": str(tmp_path / "m"), "LOG_LEVEL": "WARNING"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum("already current" not in out for out in outputs) <= 1


def test_create_key_prints_a_working_key_last(runner, db):
    result = runner.invoke(args=["create-key", "--role", "editor", "--name", "pm"])
    assert result.exit_code == 0, result.output
    raw = result.output.strip().splitlines()[-1]
    principal = KeyVerifier(db).principal(raw)
    assert principal is not None and principal.role == "editor" and principal.name == "pm"


def test_create_key_refuses_unknown_roles(runner):
    result = runner.invoke(args=["create-key", "--role", "boss"])
    assert result.exit_code != 0


def test_create_key_refuses_a_name_the_api_would_in_one_line(runner, client, auth):
    # PostgreSQL had answered a 129-character name with a 99-line traceback.
    result = runner.invoke(args=["create-key", "--role", "editor", "--name", "k" * 129])
    assert result.exit_code == 1 and result.output.strip() == "stickyloop: name: must be 1 to 128 characters of UTF-8 without NUL, got 129"
    undecodable = runner.invoke(args=["create-key", "--role", "editor", "--name", "caf\udce9"])  # b"caf\xe9" from a Latin-1 shell
    assert undecodable.exit_code == 1 and undecodable.output.startswith("stickyloop: name: must be 1 to 128 characters of UTF-8")
    assert [k["name"] for k in get_ok(client, "/v1/keys", auth("admin"))["keys"]].count("k" * 129) == 0


def test_search_settings_without_a_search_are_refused_not_dropped(runner, client, auth):
    for option in (["--tune-space", "factors=[16, 32]"], ["--tune-metric", "ndcg_at_10"], ["--tune-seed", "7"]):
        result = runner.invoke(args=["train", *option])
        assert result.exit_code == 2 and "needs --tune-trials" in result.output, result.output
    assert get_ok(client, "/v1/models", auth("editor"))["models"] == []  # nothing was trained


def test_demo_loads_data_and_its_running_experiments_once(runner, client, auth):
    first = runner.invoke(args=["demo", "--users", "300", "--items", "100", "--events", "3000"])
    assert first.exit_code == 0, first.output
    assert "experiment points-q4: 300 of 300 users enrolled" in first.output
    listed = client.get("/v1/experiments?status=running", headers=auth("analyst")).get_json()["experiments"]
    assert sorted(e["key"] for e in listed) == ["bonus-bandit", "checkout-double", "checkout-streak", "points-q4", "win-back"]
    layer = client.get("/v1/layers/checkout", headers=auth("analyst")).get_json()
    assert [r["experiment"] for r in layer["ranges"]] == ["checkout-double", "checkout-streak"] and layer["free"] == 0.0
    halves = [client.get(f"/v1/experiments/{k}/results", headers=auth("analyst")).get_json() for k in ("checkout-double", "checkout-streak")]
    assert sum(a["users"] for r in halves for a in r["arms"]) == 300  # every user in exactly one half
    win_back = client.get("/v1/experiments/win-back/results", headers=auth("analyst")).get_json()
    assert 200 <= sum(a["users"] for a in win_back["arms"]) < 300  # the lapsed customers, and few others
    results = client.get("/v1/experiments/points-q4/results", headers=auth("analyst")).get_json()
    assert sum(a["users"] for a in results["arms"]) == 300
    bandit = client.get("/v1/experiments/bonus-bandit/results", headers=auth("analyst")).get_json()
    assert sum(a["users"] for a in bandit["arms"]) == 300 and sum(bandit["allocation"].values()) == pytest.approx(1.0)
    # Every experiment's schedules have costs to show: purchases after exposure (and the lapsed customers'
    # comeback purchases) went through them, not points-q4's alone.
    for answer in (results, bandit, *halves, win_back):
        assert sum(a["reward_actions"] for a in answer["arms"]) > 0 and any(a["points_per_user"] for a in answer["arms"]), answer["experiment"]
    # Its simulated users arrived over the month before it was loaded, and its start says so.
    from datetime import datetime

    shown = {k: client.get(f"/v1/experiments/{k}", headers=auth("analyst")).get_json() for k in ("points-q4", "win-back")}
    started = {k: datetime.fromisoformat(e["started_at"]).timestamp() for k, e in shown.items()}
    assert all(datetime.fromisoformat(e["created_at"]).timestamp() <= started[k] for k, e in shown.items())  # not started before it was made
    first_seen = datetime.fromisoformat(client.get("/v1/experiments/points-q4/assignment?user_id=user-0", headers=auth("storefront")).get_json()["exposed_at"]).timestamp()
    assert started["points-q4"] == pytest.approx(first_seen, abs=1e-3) and time.time() - started["points-q4"] > 29 * 86_400
    assert 0.5 * 86_400 < time.time() - started["win-back"] < 2 * 86_400
    # What the API changed since (a recall) stays as it is: make run loads the demo each time.
    shop = auth("storefront")
    assert client.post("/v1/items", json={"items": [{"item_id": "sku-1", "available": False, "category": "recalled"}]}, headers=shop).status_code == 200
    again = runner.invoke(args=["demo", "--users", "300", "--items", "100", "--events", "3000"])
    assert "points-q4: already there" in again.output and "(0 new)" in again.output
    item = client.get("/v1/items/sku-1", headers=shop).get_json()
    assert (item["available"], item["category"]) == (False, "recalled")
    assert client.get("/v1/experiments/points-q4/results", headers=auth("analyst")).get_json()["arms"] == results["arms"]


@pytest.mark.parametrize("args", [["--users", "-5"], ["--items", "0"], ["--events", "1000000000000"], ["--users", "99999999999999999999"]])
def test_demo_refuses_a_number_it_cannot_load_in_one_line(runner, client, auth, args):
    result = runner.invoke(args=["demo", *args])
    assert result.exit_code == 2 and "Traceback" not in result.output and "is not in the range" in result.output, result.output
    assert get_ok(client, "/v1/items/popular", auth("storefront"))["items"] == []  # nothing was loaded


def test_a_demo_load_stopped_halfway_is_resumed_by_the_next_run(runner, client, auth, monkeypatch):
    from service.usecases import demo_experiments

    real, calls = demo_experiments.assign, []

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - Ctrl-C halfway through the bandit's users
        calls.append(args[2])
        if args[2] == "bonus-bandit" and calls.count("bonus-bandit") > 120:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(demo_experiments, "assign", interrupted)
    demo = ["demo", "--users", "300", "--items", "100", "--events", "3000"]
    assert runner.invoke(args=demo).exit_code != 0
    monkeypatch.setattr(demo_experiments, "assign", real)
    # Someone's own experiment under a demo key is not the demo's to fill.
    running(client, auth("editor"), ab_definition(key="win-back"))
    again = runner.invoke(args=demo)
    assert again.exit_code == 0, again.output
    assert "experiment points-q4: already there" in again.output and "experiment bonus-bandit: 300 of 300 users enrolled" in again.output
    assert "experiment win-back: already there" in again.output
    bandit = client.get("/v1/experiments/bonus-bandit/results", headers=auth("analyst")).get_json()
    assert sum(a["users"] for a in bandit["arms"]) == 300
    # Each user drew again what they drew before the stop: the conversions stored are the ones reported.
    reported = int(re.search(r"bonus-bandit: 300 of 300 users enrolled, (\d+) conversions reported", again.output).group(1))
    assert sum(a["total"] for a in bandit["arms"]) == reported
    assert "bonus-bandit: already there" in runner.invoke(args=demo).output


def test_a_demo_load_stopped_between_creating_and_starting_an_experiment_starts_it_next_time(runner, client, auth, monkeypatch):
    from service.usecases import demo_experiments

    real = demo_experiments.experiments.move

    def interrupted(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202 - Ctrl-C right after the first experiment was created
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_experiments.experiments, "move", interrupted)
    demo = ["demo", "--users", "300", "--items", "100", "--events", "3000"]
    assert runner.invoke(args=demo).exit_code != 0
    monkeypatch.setattr(demo_experiments.experiments, "move", real)
    again = runner.invoke(args=demo)
    assert again.exit_code == 0 and "experiment points-q4: 300 of 300 users enrolled" in again.output, again.output
    assert client.get("/v1/experiments/points-q4", headers=auth("analyst")).get_json()["status"] == "running"


def test_make_runs_second_time_keeps_the_served_model_and_leaves_one_set_of_demo_keys(runner, client, auth, db):
    two_tribes(client, auth("storefront"))
    first = runner.invoke(args=["train", "--unless-active", "--param", "iterations=3"])
    assert first.exit_code == 0 and "active: yes" in first.output, first.output
    served = client.get("/v1/models", headers=auth("editor")).get_json()["active_version"]
    again = runner.invoke(args=["train", "--unless-active"])
    assert again.exit_code == 0 and f"model {served} is already served; not training another" in again.output
    assert client.get("/v1/models", headers=auth("editor")).get_json()["active_version"] == served
    exports = [runner.invoke(args=["demo-keys"]).output for _ in range(2)]
    demo = [k for k in list_keys(db) if k.name.startswith("demo ") and k.revoked_at is None]
    assert len(demo) == 4  # one per role: the second run revoked the first run's
    first_editor = next(line.split("=", 1)[1] for line in exports[0].splitlines() if "EDITOR_KEY=" in line)
    second_editor = next(line.split("=", 1)[1] for line in exports[1].splitlines() if "EDITOR_KEY=" in line)
    assert KeyVerifier(db).principal(first_editor) is None and KeyVerifier(db).principal(second_editor) is not None


def test_demo_keys_revokes_only_the_keys_it_made_not_an_admins_key_of_the_same_name(runner, client, auth, db):
    runner.invoke(args=["demo-keys"])
    own = client.post("/v1/keys", json={"role": "storefront", "name": "demo storefront"}, headers=auth("admin")).get_json()
    again = runner.invoke(args=["demo-keys"])
    assert "revoked the 4 demo keys made before" in again.output
    assert client.get("/v1/items/popular", headers={"Authorization": f"Bearer {own['key']}"}).status_code == 200
    assert len([k for k in list_keys(db) if k.name.startswith("demo ") and k.revoked_at is None]) == 5


def test_demo_keys_stopped_halfway_leaves_no_key_the_next_run_forgets(runner, db, monkeypatch):
    from service.usecases import keys as key_usecases

    assert runner.invoke(args=["demo-keys"]).exit_code == 0  # a first run, whose keys are recorded
    real, made = key_usecases.create_key, []

    def stopped_after_two(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - Ctrl-C after two keys were made
        if len(made) == 2:
            raise KeyboardInterrupt
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(key_usecases, "create_key", stopped_after_two)
    assert runner.invoke(args=["demo-keys"]).exit_code != 0
    monkeypatch.setattr(key_usecases, "create_key", real)
    assert runner.invoke(args=["demo-keys"]).exit_code == 0
    live = [k for k in list_keys(db) if k.name.startswith("demo ") and k.revoked_at is None]
    assert len(live) == 4 and not {record.id for record, _ in made} & {k.id for k in live}  # the halfway run's two revoked


def test_keys_made_and_revoked_are_logged_without_the_key(runner, client, auth, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="service.usecases.keys")
    result = runner.invoke(args=["create-key", "--role", "analyst", "--name", "ops"])
    assert result.exit_code == 0, result.output
    raw = result.output.strip().splitlines()[-1]
    key_id = next(k.id for k in list_keys(client.application.extensions["stickyloop"].db) if k.name == "ops")
    admin_id = next(k.id for k in list_keys(client.application.extensions["stickyloop"].db) if k.role == "admin")
    for _ in range(2):  # revoked once: the second call answers the same and logs nothing
        assert client.delete(f"/v1/keys/{key_id}", headers=auth("admin")).status_code == 200
    lines = [(r.getMessage(), r.key_id, r.key_name, r.by_key_id) for r in caplog.records if r.name == "service.usecases.keys"]
    assert lines == [("key created", key_id, "ops", None), ("key revoked", key_id, "ops", admin_id)]
    assert all(raw not in r.getMessage() and raw not in str(vars(r)) for r in caplog.records)


def test_a_new_database_is_one_log_line_not_alembics_narration(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}", "MODEL_DIR": str(tmp_path / "models"), "LOG_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if '"logger"' in line and "alembic" in line] == []
    assert '"msg": "schema upgraded"' in done.stderr


def test_commands_refuse_in_one_line_a_database_without_this_releases_schema(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}", "MODEL_DIR": str(tmp_path / "models"), "LOG_LEVEL": "WARNING"}

    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    refused = flask("create-key", "--role", "admin")
    assert refused.returncode == 1 and refused.stderr.strip() == "stickyloop: the database has no schema yet; run `.venv/bin/flask --app wsgi init-db`"
    assert flask("init-db").returncode == 0 and flask("create-key", "--role", "admin").returncode == 0
    # Rolled back to a release older than the schema: init-db says so in one line.
    with sqlite3.connect(tmp_path / "none.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00d'")
    ahead = flask("init-db")
    assert ahead.returncode == 1 and len(ahead.stderr.strip().splitlines()) == 1, ahead.stderr
    assert ahead.stderr.startswith(f"stickyloop: cannot bring the schema at revision f00d to head with this release, whose newest is {head_revision()}")


@pytest.mark.parametrize("path, said", [
    ("notes.db", "stickyloop: DATABASE_URL names a file that is not a usable SQLite database (file is not a database)"),
    ("blocker/sub/x.db", "stickyloop: DATABASE_URL names an SQLite file under {tmp}/blocker, which is not a folder"),
    ("", "stickyloop: DATABASE_URL names an in-memory SQLite database"),
    (":memory:", "stickyloop: DATABASE_URL names an in-memory SQLite database"),
])
def test_commands_refuse_in_one_line_an_sqlite_file_they_cannot_use(tmp_path, path, said):
    # Each had been a 40-line traceback, and an in-memory database had taken init-db ("schema at revision ...")
    # only for every later command to find no schema.
    (tmp_path / "notes.db").write_text("not a database\n")
    (tmp_path / "blocker").write_text("")
    url = f"sqlite:///{tmp_path / path}" if path.endswith(".db") else f"sqlite:///{path}"
    env = {**os.environ, "DATABASE_URL": url, "MODEL_DIR": str(tmp_path / "models"), "LOG_LEVEL": "WARNING"}
    for command in (["init-db"], ["create-key", "--role", "admin"]):
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *command], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and done.stdout == "", (command, done.stdout)
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(said.format(tmp=tmp_path)), (command, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "notes.db"]  # no lock or journal left behind


def test_training_item_knn_on_the_command_line_shows_progress_and_no_library_warnings(config, client, auth):
    # implicit warned about its own matrix format: two bare lines on stderr, and in the run's log.
    two_tribes(client, auth("storefront"))
    env = {**os.environ, "DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "train", "--algorithm", "item_knn", "--no-activate"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fitting item_knn" in done.stderr and "Warning" not in done.stderr and "warnings.warn" not in done.stderr, done.stderr


def test_an_interrupted_training_run_is_cancelled_at_once_not_left_training(runner, client, auth, monkeypatch):
    from service.usecases import training_run

    client.post("/v1/events", json={"events": [{"event_id": f"k{i}", "user_id": f"u{i % 7}", "item_id": f"i{i % 5}", "type": "view"} for i in range(40)]},
                headers=auth("storefront"))

    def interrupted(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202 - Ctrl-C while the run trains
        raise KeyboardInterrupt

    monkeypatch.setattr(training_run, "run_training", interrupted)
    result = runner.invoke(args=["train", "--param", "iterations=3"])
    assert result.exit_code == 1 and "interrupted: cancelled, nothing activated" in result.output
    [model] = client.get("/v1/models", headers=auth("editor")).get_json()["models"]
    assert (model["status"], model["cancelled"], model["active"]) == ("failed", True, False)


def test_tuning_with_no_events_fails_before_its_trials(runner, client, auth):
    result = runner.invoke(args=["train", "--tune-trials", "3"])
    assert result.exit_code == 1 and "no events with a positive weight" in result.output
    [model] = client.get("/v1/models", headers=auth("editor")).get_json()["models"]
    assert model["status"] == "failed" and not model.get("tuning")


def test_downgrade_db_takes_the_schema_back_for_an_older_release_only_when_told_to(tmp_path):
    from service.config import Config
    from service.http.app import create_app

    app = create_app(Config(database_url=f"sqlite:///{tmp_path / 'back.db'}", model_dir=tmp_path / "models", testing=True, log_level="CRITICAL"))
    runner = app.test_cli_runner()
    try:
        # Nothing to take back from an empty database, said in the schema's terms (it had read "revision None").
        empty = runner.invoke(args=["downgrade-db", "0018", "--yes"])
        assert empty.exit_code == 1 and "has no schema yet" in empty.output and "None" not in empty.output
        assert runner.invoke(args=["init-db"]).output.strip() == f"schema at revision {head_revision()} (was empty)"
        unasked = runner.invoke(args=["downgrade-db", "0018"])
        assert unasked.exit_code == 2 and "--yes" in unasked.output
        assert current_revision(app.extensions["stickyloop"].db) == head_revision()
        done = runner.invoke(args=["downgrade-db", "0018", "--yes"])
        assert done.exit_code == 0 and done.output.strip() == f"schema at revision 0018 (was {head_revision()})"
        assert app.test_client().get("/readyz").status_code == 503  # this release needs its own revision
        ahead = runner.invoke(args=["downgrade-db", "0019", "--yes"])
        assert ahead.exit_code == 1 and "revision 0019 is ahead of the schema's, 0018" in ahead.output and "alembic" not in ahead.output.lower()
        unknown = runner.invoke(args=["downgrade-db", "base", "--yes"])
        assert unknown.exit_code == 1 and unknown.output.startswith("stickyloop: no revision 'base' in this release")
        assert runner.invoke(args=["init-db"]).output.strip() == f"schema at revision {head_revision()} (was 0018)"
    finally:
        app.extensions["stickyloop"].db.dispose()


def test_prune_models_keeps_what_serves_rolls_back_or_is_tested_and_deletes_the_rest(runner, client, auth, config, db):
    from tests.helpers import train

    editor, storefront = auth("editor"), auth("storefront")
    two_tribes(client, storefront)
    v1, v2, v3, v4, v5 = (train(client, editor, {"algorithm": "popularity"})["version"] for _ in range(5))
    assert client.post(f"/v1/models/{v1}/activate", headers=editor).status_code == 200  # rolled back to the first
    draft = ab_definition("arms-of-models")
    draft["arms"][1]["payload"] = {"recommender": {"model_version": v2}}
    assert client.post("/v1/experiments", json=draft, headers=editor).status_code == 201
    from service.store import model_versions

    working = "20200101T000000Z-c0ffee"  # cancelled, but its fit cannot stop midway: it still holds its place
    model_versions.insert(db, working, "ease", {}, {}, {}, activate=False)
    model_versions.cancel(db, working)
    model_versions.still_running(db, working)
    ghost = config.model_dir / "20200101T000000Z-abcdef.npz"  # a copy of a version another host pruned
    other = config.model_dir / "notes.npz"  # not a version's: never touched
    for f in (ghost, other):
        f.write_bytes(b"x")
        os.utime(f, (time.time() - 60, time.time() - 60))
    for version in (v3, v4):
        os.utime(config.model_dir / f"{version}.npz", (time.time() - 60, time.time() - 60))

    said = runner.invoke(args=["prune-models", "--keep", "1"])
    assert said.exit_code == 0 and f"would delete 2 model versions" in said.output and v3 in said.output and v4 in said.output, said.output
    assert "run again with --yes" in said.output and ghost.exists()
    assert all(get_ok(client, f"/v1/models/{v}", editor)["status"] == "ready" for v in (v3, v4))

    done = runner.invoke(args=["prune-models", "--keep", "1", "--yes"])
    assert done.exit_code == 0 and "deleted 2 model versions" in done.output, done.output
    assert {m["version"] for m in get_ok(client, "/v1/models", editor)["models"]} == {v1, v2, v5, working}  # active, named, newest, at work
    assert get_ok(client, f"/v1/models/{v3}", editor, status=404)
    assert not ghost.exists() and not (config.model_dir / f"{v3}.npz").exists() and not (config.model_dir / f"{v4}.npz").exists()
    assert (config.model_dir / f"{v5}.npz").exists() and other.exists()
    assert get_ok(client, "/v1/users/ua1/recommendations", storefront)["model_version"] == v1
    assert client.post(f"/v1/experiments/arms-of-models/start", headers=editor).status_code == 200
    again = runner.invoke(args=["prune-models", "--keep", "1", "--yes"])
    assert "deleted 0 model versions" in again.output


def prune_while(runner, before_statement: str, meanwhile, keep: int = 1, grace: float = 2):
    """Run prune-models --yes with `meanwhile` started in another thread right before its first `before_statement`;
    given `grace` seconds there (it may wait for the prune's locks: then it is waited for after the prune)."""
    import threading

    from tests.helpers import before_first

    other = threading.Thread(target=meanwhile)

    def start() -> None:
        other.start()
        other.join(grace)

    with before_first(before_statement, start):
        said = runner.invoke(args=["prune-models", "--keep", str(keep), "--yes"])
    other.join(60)
    return said


def test_a_version_activated_while_it_is_pruned_is_never_left_active_and_deleted(runner, client, auth, db):
    from tests.helpers import train

    editor = auth("editor")
    two_tribes(client, auth("storefront"))
    old, new = (train(client, editor, {"algorithm": "popularity"})["version"] for _ in range(2))
    answers: list[int] = []
    # It waits for the prune (PostgreSQL for the version's row, SQLite for the write lock), then finds no such version.
    said = prune_while(runner, "DELETE FROM model_versions", lambda: answers.append(client.post(f"/v1/models/{old}/activate", headers=editor).status_code))
    active = [m["version"] for m in get_ok(client, "/v1/models", editor)["models"] if m["active"]]
    assert (said.exit_code, answers, active) == (0, [404], [new]), said.output


def test_an_experiment_naming_a_version_while_it_is_pruned_undoes_the_prune(runner, client, auth, db):
    from tests.helpers import train

    editor = auth("editor")
    two_tribes(client, auth("storefront"))
    old, new = (train(client, editor, {"algorithm": "popularity"})["version"] for _ in range(2))
    draft = ab_definition("names-the-old-one")
    draft["arms"][1]["payload"] = {"recommender": {"model_version": old}}
    created: list[int] = []
    # On PostgreSQL nothing holds the draft back: the prune waits for it, however slow the machine.
    said = prune_while(runner, "DELETE FROM model_versions", lambda: created.append(client.post("/v1/experiments", json=draft, headers=editor).status_code),
                       grace=2 if db.is_sqlite else 60)
    assert created == [201]
    if db.is_sqlite:  # the draft waited for the prune's write lock: its start will say the version is missing
        assert said.exit_code == 0 and "deleted 1 model versions" in said.output, said.output
        assert client.post("/v1/experiments/names-the-old-one/start", headers=editor).status_code == 409
    else:  # the draft came first: the prune saw it and deleted nothing
        assert said.exit_code == 1 and "activated or named by an experiment while" in said.output, said.output
        assert get_ok(client, f"/v1/models/{old}", editor)["status"] == "ready"


def test_a_run_asked_for_while_versions_are_pruned_is_not_among_them(runner, client, auth, db):
    from service.store import model_versions
    from tests.helpers import train

    editor = auth("editor")
    two_tribes(client, auth("storefront"))
    for _ in range(2):
        train(client, editor, {"algorithm": "popularity"})
    said = prune_while(runner, "SELECT experiments.arms", lambda: model_versions.insert(db, "20200101T000000Z-0a5ced", "als", {}, {}, {}, activate=False), keep=0)
    assert said.exit_code == 0 and "deleted 1 model versions" in said.output, said.output  # the inactive one of the two
    assert get_ok(client, "/v1/models/20200101T000000Z-0a5ced", editor)["status"] == "training"
