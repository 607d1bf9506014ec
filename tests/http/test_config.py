"""Configuration from the environment."""
from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Config


def test_environment_values_are_parsed_into_types():
    config = Config.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://u@h/db",
            "MODEL_DIR": "/tmp/m",
            "LOG_LEVEL": "debug",
            "LOG_REQUESTS": "false",
            "MAX_CONTENT_LENGTH": "1024",
            "EVENT_WEIGHTS": "view=0.5,purchase=10",
            "TRAINING_RUNNER": "thread",
        }
    )
    assert config.database_url == "postgresql+psycopg://u@h/db"
    assert config.model_dir == Path("/tmp/m")
    assert config.log_requests is False
    assert config.max_content_length == 1024
    assert config.event_weights["view"] == 0.5 and config.event_weights["purchase"] == 10.0
    assert config.event_weights["click"] == 2.0
    assert not config.is_sqlite


def test_defaults_use_sqlite_under_instance():
    config = Config.from_env({})
    assert config.is_sqlite and config.database_url.endswith("instance/stickyloop.db")
    assert config.model_dir.name == "models" and config.model_dir.parent.name == "instance"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"EVENT_WEIGHTS": "like=3"}, "unknown event type"),
        ({"EVENT_WEIGHTS": "view=-1"}, "must be a finite number of at least 0, got '-1'"),
        ({"EVENT_WEIGHTS": "view=nan"}, "must be a finite number of at least 0, got 'nan'"),
        ({"MAX_CONTENT_LENGTH": "lots"}, "MAX_CONTENT_LENGTH"),
        ({"TRAINING_RUNNER": "cron"}, "TRAINING_RUNNER"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"LOG_REQUESTS": "maybe"}, "LOG_REQUESTS"),
        ({"ANN_PRECOMPUTED_USERS": "-5"}, "ANN_PRECOMPUTED_USERS cannot be negative"),
        ({"ANN_PRECOMPUTED_USERS": "many"}, "ANN_PRECOMPUTED_USERS must be an integer"),
        ({"MAX_SERVED_VERSIONS": "-1"}, "MAX_SERVED_VERSIONS cannot be negative"),
        ({"DATABASE_URL": "mysql://u:hunter2@h/db"}, "DATABASE_URL must be an SQLAlchemy URL of SQLite or PostgreSQL"),
        ({"DATABASE_URL": "postgresql+psycopg2://u:hunter2@h/db"}, r"DATABASE_URL names a driver that is not installed \(psycopg2\)"),
        ({"DATABASE_URL": "postgresql+psycopg://u:hunter2@h:abc/db"}, "DATABASE_URL is not a usable SQLAlchemy URL"),
        ({"DATABASE_URL": "sqlite+foo:///x.db"}, "DATABASE_URL is not a usable SQLAlchemy URL"),
    ],
)
def test_bad_environment_values_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message) as raised:
        Config.from_env(env)
    assert "hunter2" not in str(raised.value)  # a URL's password never reaches a log


def test_the_app_reads_its_config_from_the_environment(monkeypatch, tmp_path):
    from service.http.app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    app = create_app()
    assert app.extensions["stickyloop"].config.database_url.endswith("env.db")
    assert app.extensions["stickyloop"].config.model_dir == tmp_path / "models"
