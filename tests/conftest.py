"""Fixtures: app -> client -> keys, on SQLite by default or on DATABASE_URL (PostgreSQL)."""
from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.http.app import create_app
from service.usecases.keys import ROLES, create_key
from service.config import Config
from service.store.database import Database
from service.store.tables import Base
from service.store.migrate import upgrade
import service.store.experiments as stored_experiments

# Experiments created in this process take their salts from the running test's name and a count, not
# from `secrets`: a test's users then split into arms the same way on every run, so no test can pass
# or fail by how a random salt happened to split them. (Servers the tests start keep random salts.)
_salt_source: list[Any] = ["", itertools.count()]


class _SaltsOfTheRunningTest:
    @staticmethod
    def token_hex(nbytes: int = 32) -> str:
        name, count = _salt_source
        return hashlib.sha256(f"{name}#{next(count)}".encode()).hexdigest()[: 2 * nbytes]


stored_experiments.secrets = _SaltsOfTheRunningTest  # type: ignore[assignment]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _salt_source[:] = [item.nodeid, itertools.count()]


@contextmanager
def own_postgres_database(server_url: str) -> Iterator[str]:
    """A new, uniquely named database on the server of `server_url`, dropped afterwards.

    So that two suites on one machine (or one suite's PostgreSQL run and another's
    SQLite run, which also uses this server) never share data.
    """
    admin = create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"stickyloop_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database for the session, migrated from empty: SQLite in a temporary folder, or a PostgreSQL database of its own.

    DATABASE_URL names the PostgreSQL server to use; the suite never touches the database it names.
    Subprocesses the tests start (gunicorn, the CLI) inherit the session's own URL.
    """
    requested = os.environ.get("DATABASE_URL")
    with own_postgres_database(requested) if requested else _sqlite(tmp_path_factory.mktemp("db")) as url:
        previous = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        db = Database(url)
        upgrade(db)
        db.dispose()
        try:
            yield url
        finally:
            if previous is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = previous


@contextmanager
def _sqlite(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'test.db'}"


def _wipe(db: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if db.is_sqlite:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
        else:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """A test config on the session database with models under a fresh folder."""
    return Config(
        database_url=database_url,
        model_dir=tmp_path / "models",
        training_runner="thread",
        log_requests=False,
        log_level="WARNING",
        testing=True,
    )


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    """The app on a clean database."""
    application = create_app(config)
    db = application.extensions["stickyloop"].db
    _wipe(db)
    yield application
    db.dispose()


@pytest.fixture
def db(app: Flask) -> Database:
    """The app's database."""
    return app.extensions["stickyloop"].db  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client."""
    return app.test_client()


@pytest.fixture
def keys(db: Database) -> dict[str, str]:
    """One raw API key per role."""
    return {role: create_key(db, role, f"test {role}")[1] for role in ROLES}


@pytest.fixture
def auth(keys: dict[str, str]) -> Callable[[str], dict[str, str]]:
    """Headers that authenticate as a role."""
    return lambda role: {"Authorization": f"Bearer {keys[role]}"}


@pytest.fixture
def runner(app: Flask) -> Any:
    """The CLI runner."""
    return app.test_cli_runner()


def wait_until(check: Callable[[], Any], timeout: float = 120.0, interval: float = 0.05) -> Any:
    """Poll until `check` returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_for_model(client: FlaskClient, headers: dict[str, str], version: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll a model version until it leaves `training`."""

    def done() -> dict[str, Any] | None:
        body = client.get(f"/v1/models/{version}", headers=headers).get_json()
        return body if body["status"] != "training" else None

    ended = wait_until(done, timeout)
    # The run's thread logs its activation after the commit that the poll saw: a test that reads the
    # log next would otherwise catch that line, or not, by timing.
    for thread in threading.enumerate():
        if thread.name in (f"train-{version}", f"reap-{version}"):
            thread.join(timeout)
    return ended  # type: ignore[no-any-return]
