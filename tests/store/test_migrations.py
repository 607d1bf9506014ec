"""Migrations: the models match the migrated schema, and events stored before the training log are backfilled into it."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from recommender.matrix import EVENT_TYPES
from service.store.database import Database
from service.store.tables import Base
from service.store.migrate import _alembic_config, current_revision, downgrade, head_revision, upgrade
from service.store import event_log, state
from service.store.events import insert_events


@pytest.fixture
def empty_db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """A database of its own, with no tables, on the suite's engine (a sibling database on PostgreSQL)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'migrations.db'}")
        yield db
        db.dispose()
        return
    name = f"{url.database}_migrations"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(url.set(database=name).render_as_string(hide_password=False))
    yield db
    db.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def test_the_models_describe_the_migrated_schema(empty_db):
    upgrade(empty_db)
    with empty_db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []


def test_init_db_from_several_hosts_at_once_brings_an_empty_database_to_the_head(empty_db):
    # On PostgreSQL a process waiting inside SQL for the migration lock held a snapshot that the
    # holder's CREATE INDEX CONCURRENTLY waited for: every process but one died of a deadlock.
    env = {**os.environ, "DATABASE_URL": empty_db.url}
    root = Path(__file__).resolve().parents[2]
    hosts = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [h.communicate(timeout=120)[0] for h in hosts]
    assert [h.returncode for h in hosts] == [0, 0, 0], outputs
    assert current_revision(empty_db) == head_revision()


def test_events_stored_before_the_training_log_are_backfilled_into_it(empty_db):
    upgrade(empty_db, "0002")
    rows = [(f"e{k}", f"u{k % 7}", f"i{k % 5}", EVENT_TYPES[k % 4], 1000.0 + k) for k in range(23_456)]
    with empty_db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO events (event_id, user_id, item_id, type, ts, received_at) VALUES (:e, :u, :i, :t, :ts, 0)"),
            [{"e": e, "u": u, "i": i, "t": t, "ts": ts} for e, u, i, t, ts in rows],
        )
    upgrade(empty_db)
    snapshot = event_log.read(empty_db)
    logged, last_id = snapshot.events, snapshot.last_event_id
    got = list(zip(logged.user_ids[logged.users], logged.item_ids[logged.items], (EVENT_TYPES[t] for t in logged.types), logged.ts))
    assert got == [(u, i, t, ts) for _, u, i, t, ts in rows]
    assert last_id == len(rows)


def test_the_training_log_reads_back_and_postgresql_compresses_it_with_lz4(empty_db):
    upgrade(empty_db)
    events = [{"event_id": f"e{k}", "user_id": f"u{k % 97}", "item_id": f"i{k % 31}", "type": "view", "ts": 1.7e9 + k} for k in range(5_000)]
    assert insert_events(empty_db, events) == (5_000, 0)
    if not empty_db.is_sqlite:  # SQLite stores the bytes as they are
        with empty_db.engine.connect() as conn:
            method, stored, raw = conn.execute(text("SELECT pg_column_compression(data), pg_column_size(data), length(data) FROM event_segments")).one()
        assert method == "lz4" and stored < raw
    logged = event_log.read(empty_db).events
    got = sorted(zip(logged.ts, logged.user_ids[logged.users], logged.item_ids[logged.items]))
    assert got == [(e["ts"], e["user_id"], e["item_id"]) for e in events]


def test_strings_compare_bytewise_and_ids_keep_their_meaning(empty_db):
    upgrade(empty_db)
    if not empty_db.is_sqlite:  # SQLite's default collation is bytewise already
        with empty_db.engine.connect() as conn:
            collations = conn.execute(text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND data_type = 'character varying' AND table_name <> 'alembic_version'"
            )).all()
        assert len(collations) > 40 and {c[2] for c in collations} == {"C"}, [c for c in collations if c[2] != "C"]
    # Ids a locale might fold together or order apart stay distinct, and a replay is still a duplicate.
    ids = ["e1", "E1", "\u00e91", "e\u03011", "ß", "ss", "a b", "a-b"]
    events = [{"event_id": i, "user_id": i, "item_id": i, "type": "view", "ts": 1.7e9} for i in ids]
    assert insert_events(empty_db, events) == (len(ids), 0)
    assert insert_events(empty_db, events) == (0, len(ids))
    with empty_db.engine.connect() as conn:
        users = conn.execute(text("SELECT user_id FROM user_activity ORDER BY user_id")).scalars().all()
    assert users == sorted(ids)  # bytewise, as Python orders str (code point order is UTF-8 byte order)


def _purchases_plan(db: Database) -> str:
    params = ("active_model", "catalogue", "u1")
    with db.engine.connect() as conn:
        if db.is_sqlite:
            return " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + state._PURCHASES, params))
        conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table would be scanned otherwise
        return " ".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + state._PURCHASES.replace("?", "%s"), params))


def _purchases_index_columns(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return [c["column_names"] for c in inspect(conn).get_indexes("events") if c["name"] == "ix_events_user_purchases"][0]


def test_a_known_users_purchases_are_read_from_the_partial_index_alone(empty_db):
    # Walking the index of all events instead answers the same rows, only slower: the plan is what can regress.
    upgrade(empty_db, "0012")
    assert _purchases_index_columns(empty_db) == ["user_id", "ts", "item_id"]
    if empty_db.is_sqlite:
        assert "COVERING INDEX ix_events_user_recent" in _purchases_plan(empty_db)  # what 0013 mends
    upgrade(empty_db)
    assert _purchases_index_columns(empty_db) == ["user_id", "ts", "item_id", "type"]
    plan = _purchases_plan(empty_db)
    assert ("COVERING INDEX ix_events_user_purchases" if empty_db.is_sqlite else "Index Only Scan using ix_events_user_purchases") in plan
    downgrade(empty_db, "0012")
    assert _purchases_index_columns(empty_db) == ["user_id", "ts", "item_id"]
    upgrade(empty_db)
    assert _purchases_index_columns(empty_db) == ["user_id", "ts", "item_id", "type"]


def test_0016_rebuilds_activity_from_events_dated_ahead_and_returns(empty_db):
    upgrade(empty_db, "0015")
    now = time.time()
    events = [
        {"event_id": "a1", "user_id": "ahead", "item_id": "i", "type": "purchase", "ts": now - 40 * 86_400, "value": 5.0},
        {"event_id": "a2", "user_id": "ahead", "item_id": "i", "type": "view", "ts": now + 50 * 365 * 86_400},
        {"event_id": "r1", "user_id": "returner", "item_id": "i", "type": "purchase", "ts": now - 86_400, "value": -5.0},
        {"event_id": "p1", "user_id": "plain", "item_id": "i", "type": "purchase", "ts": now - 86_400, "value": 7.0},
    ]
    with empty_db.engine.begin() as conn:  # the rows as releases before 0016 wrote them (today's ingestion writes columns 0015 lacks)
        conn.execute(text("INSERT INTO events (event_id, user_id, item_id, type, ts, value, received_at) VALUES (:event_id, :user_id, :item_id, :type, :ts, :value, :now)"),
                     [{"value": None, **e, "now": now} for e in events])
        conn.execute(text("INSERT INTO user_activity (user_id, first_seen, last_seen, purchases, revenue) VALUES (:u, :first, :last, 1, :revenue)"), [
            {"u": "ahead", "first": now - 40 * 86_400, "last": now + 50 * 365 * 86_400, "revenue": 5.0},
            {"u": "returner", "first": now - 86_400, "last": now - 86_400, "revenue": -5.0},
            {"u": "plain", "first": now - 86_400, "last": now - 86_400, "revenue": 7.0},
        ])
    upgrade(empty_db)
    with empty_db.engine.connect() as conn:
        rows = {r[0]: r[1:] for r in conn.execute(text("SELECT user_id, first_seen, last_seen, purchases, revenue FROM user_activity"))}
    assert rows["ahead"][0] == pytest.approx(now - 40 * 86_400) and now - 60 <= rows["ahead"][1] <= time.time()
    assert rows["ahead"][2:] == (1, 5.0) and rows["returner"][2:] == (0, -5.0) and rows["plain"][2:] == (1, 7.0)


def test_0017_lets_a_ledger_reason_name_a_long_action_and_its_downgrade_cuts_it_back(empty_db):
    upgrade(empty_db)
    reason = "not a qualifying action (this schedule rewards '" + "a" * 64 + "')"
    with empty_db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO reward_ledger (action_id, experiment_key, user_id, arm, action, value, ts, sequence, rewarded, points, balance_after, reason, created_at) "
            "VALUES ('a1', 'x', 'u', 'c', 'purchase', 1.0, 0, 1, false, 0, 0, :reason, 0)"), {"reason": reason})
    downgrade(empty_db, "0016")
    with empty_db.engine.connect() as conn:
        assert conn.execute(text("SELECT reason FROM reward_ledger")).scalar_one() == reason[:64]
    upgrade(empty_db)


def test_0020_takes_outcomes_dated_after_an_earlier_stop_out_of_the_totals_and_its_downgrade_puts_them_back(empty_db, tmp_path):
    from service.config import Config
    from service.http.app import create_app
    from service.usecases.keys import create_key
    from tests.experiment_helpers import ab_definition, assign, running
    from tests.helpers import iso

    upgrade(empty_db, "0019")
    app = create_app(Config(database_url=empty_db.engine.url.render_as_string(hide_password=False), model_dir=tmp_path / "models", testing=True, log_level="CRITICAL"))
    admin = {"Authorization": f"Bearer {create_key(empty_db, 'admin')[1]}"}
    client = app.test_client()
    running(client, admin, ab_definition())
    stop = time.time()
    for user in ("u1", "u2", "u3"):
        assign(client, admin, "points-q4", user, timestamp=iso(stop - 5 * 86_400))
    outcomes = [("o1", "u1", 10.0, stop - 86_400), ("o2", "u1", 1e12, stop + 86_400), ("o3", "u2", 7.0, stop + 2 * 86_400), ("o4", "u3", 1e-5, stop - 60)]
    body = [{"outcome_id": o, "experiment": "points-q4", "user_id": u, "metric": "spend", "value": v, "timestamp": iso(t)} for o, u, v, t in outcomes]
    assert client.post("/v1/outcomes", json={"outcomes": body}, headers=admin).get_json()["accepted"] == 4
    for oid, value in (("o5", 1e12), ("o6", 1e-5)):  # batch by batch: the totals keep the 1e-5 a double sum rounds away
        one = {"outcome_id": oid, "experiment": "points-q4", "user_id": "u4", "metric": "spend", "value": value, "timestamp": iso(stop + 3600)}
        assign(client, admin, "points-q4", "u4", timestamp=iso(stop - 5 * 86_400))
        assert client.post("/v1/outcomes", json={"outcomes": [one]}, headers=admin).get_json()["accepted"] == 1
    with empty_db.engine.begin() as conn:  # stopped as releases before 0020 stopped: every outcome stays in the totals
        conn.execute(text("UPDATE experiments SET status = 'stopped', stopped_at = :at, revision = revision + 1"), {"at": stop})

    def totals() -> dict[str, float]:
        with empty_db.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(text("SELECT user_id, total + total_low FROM user_metric_totals"))}

    before = totals()
    assert before == {"u1": 10.0 + 1e12, "u2": 7.0, "u3": 1e-5, "u4": 1e12 + 1e-5}
    with empty_db.engine.begin() as conn:  # u2 as the release just before 0020 left it: its later outcome already taken back
        conn.execute(text("UPDATE user_metric_totals SET total = 0 WHERE user_id = 'u2'"))
    upgrade(empty_db)
    assert totals() == {"u1": 10.0, "u2": 0.0, "u3": 1e-5, "u4": 0.0}  # exactly: what the 1e12 rounded away came back out too
    spend = client.get("/v1/experiments/points-q4/results?metric=spend", headers=admin).get_json()
    assert sum(arm["total"] for arm in spend["arms"]) == 10.0 + 1e-5
    app.extensions["stickyloop"].db.dispose()  # its pooled connections would hold plans of the old schema across the downgrade
    downgrade(empty_db, "0019")
    assert totals() == before
    upgrade(empty_db)
    assert totals() == {"u1": 10.0, "u2": 0.0, "u3": 1e-5, "u4": 0.0}
    app.extensions["stickyloop"].db.dispose()


def test_a_downgrade_that_rebuilds_referenced_tables_keeps_every_row_that_points_at_them(empty_db, tmp_path):
    # SQLite rebuilds a table to change its columns: with foreign keys on, the rebuild of `experiments` had
    # deleted every exposure and bandit statistic (0006, 0005), and that of `model_versions` failed (0014).
    from service.config import Config
    from service.http.app import create_app
    from service.usecases.keys import create_key
    from tests.conftest import wait_for_model
    from tests.experiment_helpers import ab_definition, assign, bandit_definition, running

    upgrade(empty_db)
    app = create_app(Config(database_url=empty_db.engine.url.render_as_string(hide_password=False), model_dir=tmp_path / "models", testing=True, log_level="CRITICAL"))
    admin = {"Authorization": f"Bearer {create_key(empty_db, 'admin')[1]}"}
    client = app.test_client()
    running(client, admin, ab_definition())
    running(client, admin, bandit_definition())
    for user in range(20):
        assign(client, admin, "points-q4", f"u{user}")
        assign(client, admin, "bonus-bandit", f"u{user}")
    client.post("/v1/events", json={"events": [{"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "purchase"}]}, headers=admin)
    version = client.post("/v1/models", json={"algorithm": "popularity"}, headers=admin).get_json()["version"]
    assert wait_for_model(client, admin, version)["status"] == "ready"
    app.extensions["stickyloop"].db.dispose()  # its pooled connections would hold plans of the newer schema

    def counts() -> dict[str, int]:
        with empty_db.engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in ("exposures", "bandit_arm_stats", "model_versions", "model_artifacts")}

    before = counts()
    assert before == {"exposures": 40, "bandit_arm_stats": 3, "model_versions": 1, "model_artifacts": 1}
    downgrade(empty_db, "0005")
    assert counts() == before
    upgrade(empty_db)
    assert counts() == before


def test_a_row_orphaned_before_a_migration_does_not_block_it(tmp_path):
    # SQLite only (PostgreSQL checks every reference as it is written, so no row is orphaned there).
    path = tmp_path / "orphaned.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db, "0019")
    with sqlite3.connect(path) as raw:  # the shell's default: foreign keys off
        raw.execute("INSERT INTO model_artifacts (version, data) VALUES ('nobody', x'00')")
    db.dispose()
    assert upgrade(db)[1] == head_revision()
    assert upgrade(db)[1] == head_revision()
    db.dispose()


def test_0021_downgrade_keeps_the_at_risk_index_in_its_order(empty_db):
    # SQLite rebuilds the table to drop a column, and had rebuilt the index without DESC: pages sorted in a temporary tree.
    upgrade(empty_db)
    downgrade(empty_db, "0020")
    sql = ("SELECT sql FROM sqlite_master WHERE name = 'ix_user_activity_value'" if empty_db.is_sqlite
           else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_user_activity_value'")
    with empty_db.engine.connect() as conn:
        definition = conn.execute(text(sql)).scalar_one()
    assert definition.replace('"', "").count("DESC") == 2, definition
    upgrade(empty_db)
    assert current_revision(empty_db) == head_revision()
