"""Fixtures: app -> client -> keys, on SQLite by default or on DATABASE_URL (PostgreSQL)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from service.app import create_app
from service.auth import ROLES, create_key
from service.config import Config
from service.db import Database
from service.models import Base
from service.schema import upgrade

MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "movielens-small"
if not MOVIELENS.exists():
    MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "movielens-small"


def _database_url(tmp_root: Path) -> str:
    return os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_root / 'test.db'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database for the session, migrated from empty."""
    url = _database_url(tmp_path_factory.mktemp("db"))
    db = Database(url)
    if not db.is_sqlite:
        with db.engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(db)
    db.dispose()
    return url


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

    return wait_until(done, timeout)  # type: ignore[no-any-return]
