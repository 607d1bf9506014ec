"""Liveness, readiness, OpenAPI, docs and metrics."""
from __future__ import annotations

import os

import pytest

from service.http.app import create_app
from service.http.spec import plain_rule
from service.config import Config


def test_healthz_needs_no_key(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}
    assert resp.headers["X-Request-ID"]


def test_readyz_answers_200_when_the_database_answers(client):
    assert client.get("/readyz").status_code == 200


def test_readyz_answers_503_when_the_database_is_unreachable(tmp_path):
    config = Config(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", model_dir=tmp_path, log_level="CRITICAL", testing=True)
    resp = create_app(config).test_client().get("/readyz")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    assert resp.get_json()["error"]["code"] == "unavailable"


def test_request_id_is_echoed_when_sane(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    assert client.get("/healthz", headers={"X-Request-ID": "bad id!"}).headers["X-Request-ID"] != "bad id!"


def test_openapi_describes_every_v1_route(app, client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1"):
            path = plain_rule(rule.rule).replace("<", "{").replace(">", "}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (path, method.lower()) in documented, (path, method)
    recs = spec["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    assert {p["name"] for p in recs["parameters"]} >= {"user_id", "n", "category", "exclude"}
    assert {"200", "401", "403", "422"} <= set(recs["responses"])


def test_docs_page_lists_endpoints(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "/v1/events" in page and "/v1/users/{user_id}/recommendations" in page


def test_metrics_count_requests_per_endpoint(client):
    client.get("/healthz")
    client.get("/v1/items/sku/9")  # 401: no key; still labelled by its route, as dashboards name it
    text = client.get("/metrics").get_data(as_text=True)
    assert 'stickyloop_http_requests_total{endpoint="/healthz",method="GET",status="200"}' in text
    assert 'stickyloop_http_requests_total{endpoint="/v1/items/<item_id>",method="GET",status="401"}' in text
    assert "stickyloop_http_request_duration_seconds_bucket" in text
    # A method a client invents is counted, but not as a series of its own: 50 of them make one. The counters
    # are the process's, so what an earlier test sent counts too: the change is what is checked.
    series = 'stickyloop_http_requests_total{endpoint="unmatched",method="other",status="405"} '

    def invented() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        assert "BREW" not in text
        return next((float(line[len(series):]) for line in text.splitlines() if line.startswith(series)), 0.0)

    before = invented()
    for i in range(50):
        client.open("/healthz", method=f"BREW{i}")
    assert invented() == before + 50


def test_each_request_is_logged_once_but_a_passing_probe_is_not(tmp_path, caplog):
    import logging

    from service.store.migrate import upgrade

    config = Config(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", model_dir=tmp_path / "models", testing=True, log_requests=True)
    app = create_app(config)
    upgrade(app.extensions["stickyloop"].db)
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="stickyloop.request"):
        for path in ("/healthz", "/readyz", "/metrics", "/v1/items/popular"):
            client.get(path)
    logged = [(r.path, r.status) for r in caplog.records if r.name == "stickyloop.request"]
    assert logged == [("/v1/items/popular", 401)]
    from service.usecases.keys import create_key

    record, raw = create_key(app.extensions["stickyloop"].db, "editor")
    with caplog.at_level(logging.INFO, logger="stickyloop.request"):
        caplog.clear()
        client.get("/v1/models", headers={"Authorization": f"Bearer {raw}"})
    assert [(r.path, r.key_id) for r in caplog.records if r.name == "stickyloop.request"] == [("/v1/models", record.id)]  # who asked
    levels = {name: logging.getLogger(name).level for name in ("", "alembic")}
    try:
        debug = create_app(Config(database_url=config.database_url, model_dir=config.model_dir, testing=True, log_level="DEBUG"))
        with caplog.at_level(logging.DEBUG):  # nor does the schema check narrate itself, even at DEBUG
            caplog.clear()
            assert debug.test_client().get("/readyz").status_code == 200
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []
    down = create_app(Config(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", model_dir=tmp_path, testing=True, log_requests=True))
    with caplog.at_level(logging.INFO, logger="stickyloop.request"):
        caplog.clear()
        assert down.test_client().get("/readyz").status_code == 503
    assert [(r.path, r.status) for r in caplog.records if r.name == "stickyloop.request"] == [("/readyz", 503)]


def test_a_logged_line_keeps_a_bounded_share_of_what_the_client_wrote(tmp_path, caplog):
    import logging

    config = Config(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", model_dir=tmp_path / "models", testing=True, log_requests=True)
    client = create_app(config).test_client()
    with caplog.at_level(logging.INFO, logger="stickyloop.request"):
        client.get("/v1/items/" + "%01" * 2600)
        client.open("/healthz", method="X" * 5000)
    logged = [r for r in caplog.records if r.name == "stickyloop.request"]
    assert [(len(r.path), r.path_length, r.status) for r in logged[:1]] == [(256, 2610, 401)]
    assert len(logged[1].method) == 256 and not hasattr(logged[1], "path_length")


def _fresh(tmp_path, name: str) -> Config:
    return Config(database_url=f"sqlite:///{tmp_path / name}", model_dir=tmp_path / "models", log_level="CRITICAL", testing=True)


def test_readyz_answers_503_until_the_schema_is_this_releases(tmp_path):
    from sqlalchemy import text

    from service.store.database import Database
    from service.store.migrate import head_revision, upgrade

    empty = create_app(_fresh(tmp_path, "empty.db")).test_client().get("/readyz")
    # Waiting mends neither an empty database nor an old schema: no Retry-After, as on every other endpoint.
    assert empty.status_code == 503 and "Retry-After" not in empty.headers
    assert empty.get_json()["error"]["message"] == "the database has no schema yet; run `.venv/bin/flask --app wsgi init-db`"
    config = _fresh(tmp_path, "old.db")
    db = Database(config.database_url)
    upgrade(db, "0016")
    old = create_app(config).test_client().get("/readyz")
    assert old.status_code == 503 and "Retry-After" not in old.headers and old.get_json()["error"]["message"] == f"the schema is at revision 0016 and this release needs {head_revision()}; run `.venv/bin/flask --app wsgi init-db`"
    upgrade(db)
    assert create_app(config).test_client().get("/readyz").status_code == 200
    # A later release's migration: served, as operations.md says each migration whether the older release may run beside it.
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    assert create_app(config).test_client().get("/readyz").status_code == 200
    db.dispose()


def test_an_outage_is_said_once_in_a_while_not_once_a_request(tmp_path, caplog, monkeypatch):
    import logging

    from service.http import errors

    monkeypatch.setattr(errors, "_said", {})
    down = create_app(Config(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", model_dir=tmp_path, testing=True))
    client = down.test_client()
    with caplog.at_level(logging.WARNING, logger="service.http.errors"):
        answers = [client.get("/v1/items/popular", headers={"Authorization": "Bearer sl_x", "X-Request-ID": f"outage-{i}"}) for i in range(5)]
        assert {a.status_code for a in answers} == {503}
        said = [r for r in caplog.records if r.getMessage() == "dependency unavailable"]
        assert len(said) == 1 and said[0].request_id == "outage-0"  # matched to the request that met it first
        monkeypatch.setattr(errors, "UNAVAILABLE_LOG_SECONDS", 0.0)
        client.get("/v1/items/popular", headers={"Authorization": "Bearer sl_x"})
    said = [r for r in caplog.records if r.getMessage() == "dependency unavailable"]
    assert len(said) == 2 and said[1].requests_since_last_said == 4
    # A readiness probe every second through an outage had written a warning each time.
    monkeypatch.setattr(errors, "UNAVAILABLE_LOG_SECONDS", 10.0)
    with caplog.at_level(logging.WARNING, logger="service.http.errors"):
        assert {client.get("/readyz").status_code for _ in range(5)} == {503}
    assert len([r for r in caplog.records if r.getMessage() == "database unreachable"]) == 1


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_schema_migrated_down_under_a_running_server_answers_503_saying_so_not_500(tmp_path, store):
    from sqlalchemy import text

    from service.store.migrate import upgrade
    from service.usecases.keys import create_key
    from tests.conftest import own_postgres_database
    from tests.experiment_helpers import ab_definition, assign, running

    def ask(url: str) -> None:
        app = create_app(Config(database_url=url, model_dir=tmp_path / "models", testing=True, log_level="CRITICAL"))
        db = app.extensions["stickyloop"].db
        try:
            upgrade(db)
            admin = {"Authorization": f"Bearer {create_key(db, 'admin', 'admin')[1]}"}
            client = app.test_client()
            running(client, admin, ab_definition())
            assign(client, admin, "points-q4", "u1")
            with db.engine.begin() as conn:  # what migration 0019's downgrade does to its column
                conn.execute(text("ALTER TABLE user_metric_totals DROP COLUMN total_low"))
            outcome = {"outcome_id": "o1", "experiment": "points-q4", "user_id": "u1", "metric": "spend", "value": 1, "timestamp": "2026-11-22T10:00:00Z"}
            for answer in (client.post("/v1/outcomes", json={"outcomes": [outcome]}, headers=admin),
                           client.get("/v1/experiments/points-q4/results?metric=spend", headers=admin)):
                assert answer.status_code == 503, answer.get_json()
                assert "schema is behind this release" in answer.get_json()["error"]["message"] and "init-db" in answer.get_json()["error"]["message"]
        finally:
            db.dispose()

    if store == "sqlite":
        ask(f"sqlite:///{tmp_path / 'behind.db'}")
    else:
        with own_postgres_database(os.environ.get("PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")) as url:
            ask(url)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_server_started_before_init_db_answers_503_saying_so_not_500(tmp_path, store):
    from tests.conftest import own_postgres_database

    def ask(url: str) -> None:
        app = create_app(Config(database_url=url, model_dir=tmp_path / "models", testing=True, log_level="CRITICAL"))
        try:
            client = app.test_client()
            for method, path in (("POST", "/v1/events"), ("GET", "/v1/items/popular"), ("GET", "/v1/users/u1/recommendations")):
                answer = client.open(path, method=method, json={"events": []} if method == "POST" else None, headers={"Authorization": "Bearer sl_x"})
                assert answer.status_code == 503 and "Retry-After" not in answer.headers, (path, answer.get_json())  # until init-db runs
                assert "lacks this release's tables" in answer.get_json()["error"]["message"] and "init-db" in answer.get_json()["error"]["message"]
        finally:
            app.extensions["stickyloop"].db.dispose()

    if store == "sqlite":
        ask(f"sqlite:///{tmp_path / 'empty.db'}")
    else:
        with own_postgres_database(os.environ.get("PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")) as url:
            ask(url)


def test_an_sqlite_file_that_is_not_a_database_answers_503_saying_so_not_500(tmp_path):
    not_a_database = tmp_path / "notes.db"
    not_a_database.write_text("not a database\n")
    app = create_app(Config(database_url=f"sqlite:///{not_a_database}", model_dir=tmp_path / "models", testing=True, log_level="CRITICAL"))
    try:
        answer = app.test_client().get("/v1/experiments", headers={"Authorization": "Bearer sl_x"})
        assert answer.status_code == 503 and "Retry-After" not in answer.headers, answer.get_json()  # a retry cannot mend it
        assert answer.get_json()["error"]["message"].startswith("DATABASE_URL names a file that is not a usable SQLite database")
        assert app.test_client().get("/readyz").status_code == 503
    finally:
        app.extensions["stickyloop"].db.dispose()
    assert not_a_database.read_text() == "not a database\n"


def test_the_openapi_document_is_built_once_per_app(app, monkeypatch):
    # Anyone may ask for it without a key; built per request it cost some 30 times a /healthz.
    from service.http.views import health

    built = []
    real = health.build_openapi
    monkeypatch.setattr(health, "build_openapi", lambda app: built.append(app) or real(app))
    client = app.test_client()
    assert [client.get("/openapi.json").status_code for _ in range(3)] == [200] * 3
    assert client.get("/docs").status_code == 200 and len(built) == 1


def test_a_database_or_role_that_does_not_exist_is_an_operators_503_not_try_again(tmp_path):
    server = os.environ.get("PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres").rsplit("/", 1)[0]
    for url in (f"{server}/stickyloop_no_such_database", server.replace("postgres@", "stickyloop_no_such_role@") + "/postgres"):
        app = create_app(Config(database_url=url, model_dir=tmp_path / "models", testing=True, log_level="CRITICAL"))
        for answer in (app.test_client().get("/v1/items/popular", headers={"Authorization": "Bearer sl_x"}), app.test_client().get("/readyz")):
            assert answer.status_code == 503 and "Retry-After" not in answer.headers, answer.get_json()
            message = answer.get_json()["error"]["message"]
            assert "refuses this service" in message and "DATABASE_URL" in message and "127.0.0.1" not in message and "no_such" not in message
        app.extensions["stickyloop"].db.dispose()


def test_a_database_that_accepts_no_writes_answers_503_and_a_write_after_it_lands(client, auth, db, config):
    """A failover to a standby, or a server put in read-only mode for maintenance (PostgreSQL's
    read_only_sql_transaction), or an SQLite file opened read-only: no fault of the request's."""
    from dataclasses import replace

    from sqlalchemy import create_engine

    shop = auth("storefront")
    event = {"events": [{"event_id": "ro-1", "user_id": "u1", "item_id": "i1", "type": "view", "timestamp": "2026-01-01T00:00:00Z"}]}
    writes = (("/v1/events", event), ("/v1/items", {"items": [{"item_id": "i1"}]}))

    def refused_by(app_client) -> None:
        for path, body in writes:
            refused = app_client.post(path, json=body, headers=shop)
            assert (refused.status_code, refused.get_json()["error"]["code"]) == (503, "unavailable"), refused.get_json()

    if db.is_sqlite:
        read_only = create_app(replace(config, database_url=f"sqlite:///file:{db.engine.url.database}?mode=ro&uri=true"))
        assert read_only.test_client().get("/v1/items/popular", headers=shop).status_code == 200  # it reads
        refused_by(read_only.test_client())
        read_only.extensions["stickyloop"].db.dispose()
    else:
        name = db.engine.url.database
        admin = create_engine(db.engine.url, isolation_level="AUTOCOMMIT")

        def for_new_sessions(setting: str, end_sessions: bool) -> None:  # a database's settings reach the sessions opened after them
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" {setting}')
                if end_sessions:
                    conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")

        try:
            for_new_sessions("SET default_transaction_read_only = on", end_sessions=True)
            refused_by(client)
        finally:
            # Back to a primary, with no session ended: the connections that met the refusal were let go, so the next write lands.
            for_new_sessions("RESET default_transaction_read_only", end_sessions=False)
            admin.dispose()
    assert client.post("/v1/events", json=event, headers=shop).get_json()["accepted"] == 1
