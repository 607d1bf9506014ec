"""Typed configuration read from the environment."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from sqlalchemy.engine import make_url

from recommender.matrix import DEFAULT_WEIGHTS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"

DEFAULT_EVENT_WEIGHTS = dict(DEFAULT_WEIGHTS)


def _parse_weights(raw: str) -> dict[str, float]:
    """Parse `view=1,click=2` into a weight per event type."""
    weights = dict(DEFAULT_EVENT_WEIGHTS)
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, _, value = part.partition("=")
        if name not in weights:
            raise ValueError(f"unknown event type {name!r}; use one of {sorted(weights)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"the weight of {name!r} must be a number, got {value!r}") from None
        if not 0 <= weights[name] < float("inf"):
            raise ValueError(f"the weight of {name!r} must be a finite number of at least 0, got {value!r}")
    return weights


def _bool(raw: str) -> bool:
    """Read the usual spellings of a boolean environment variable."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "database_url": ("DATABASE_URL", str),
    "model_dir": ("MODEL_DIR", Path),
    "log_level": ("LOG_LEVEL", str),
    "log_requests": ("LOG_REQUESTS", _bool),
    "max_content_length": ("MAX_CONTENT_LENGTH", int),
    "event_weights": ("EVENT_WEIGHTS", _parse_weights),
    "training_runner": ("TRAINING_RUNNER", str),
    "training_timeout_seconds": ("TRAINING_TIMEOUT_SECONDS", float),
    "training_heartbeat_seconds": ("TRAINING_HEARTBEAT_SECONDS", float),
    "training_stale_seconds": ("TRAINING_STALE_SECONDS", float),
    "training_max_runs": ("TRAINING_MAX_RUNS", int),
    "sqlite_busy_timeout_ms": ("SQLITE_BUSY_TIMEOUT_MS", int),
    "pool_size": ("DB_POOL_SIZE", int),
    "ann_min_items": ("ANN_MIN_ITEMS", int),
    "ann_precomputed_users": ("ANN_PRECOMPUTED_USERS", int),
    "max_served_versions": ("MAX_SERVED_VERSIONS", int),
    "secret_key": ("SECRET_KEY", str),
}


_KINDS: dict[Callable[[str], Any], str] = {int: "an integer", float: "a number"}
_DATABASE_URL = re.compile(r"^(sqlite|postgresql)(\+\w+)?://")
_URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER@HOST/NAME"


def _database_url_problem(url: str) -> str | None:
    """What is wrong with a DATABASE_URL, in words that quote none of it (it may hold a password); None when usable."""
    if not _DATABASE_URL.match(url):
        return f"DATABASE_URL must be an SQLAlchemy URL of SQLite or PostgreSQL: {_URL_FORMS}"
    try:
        dialect = make_url(url).get_dialect()
        dialect.import_dbapi()
    except ModuleNotFoundError as exc:
        return f"DATABASE_URL names a driver that is not installed ({exc.name}); use {_URL_FORMS}"
    except Exception:  # a port that is not a number, a driver SQLAlchemy does not know: its messages may quote the URL
        return f"DATABASE_URL is not a usable SQLAlchemy URL (check the driver, host and port); use {_URL_FORMS}"
    if dialect.is_async:
        return f"DATABASE_URL names an asynchronous driver, and the service talks to its database synchronously; use {_URL_FORMS}"
    parsed = make_url(url)
    return _sqlite_file_problem(parsed.database, parsed.query) if parsed.get_backend_name() == "sqlite" else None


def _sqlite_file_problem(database: str | None, query: Mapping[str, Any]) -> str | None:
    """What keeps an SQLite URL's file from being the service's database (its path holds no secret, so it is named)."""
    if not database or database == ":memory:" or database.startswith("file::memory:") or query.get("mode") == "memory":
        # Each connection would get an empty database of its own, lost when it closes: init-db would succeed and
        # every command after it find no schema.
        return "DATABASE_URL names an in-memory SQLite database, which no other process or connection sees; name a file: sqlite:///PATH"
    folder = Path(database).absolute().parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"DATABASE_URL names an SQLite file under {existing}, which is not a folder"
    # SQLite writes its journal beside the file, so the folder must take new files even when the file exists.
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"DATABASE_URL names an SQLite file in {folder}, where this user cannot create files"
    return None


@dataclass(frozen=True)
class Config:
    """Everything the service reads from its environment, parsed into typed values."""

    database_url: str = f"sqlite:///{INSTANCE_DIR / 'stickyloop.db'}"
    model_dir: Path = INSTANCE_DIR / "models"
    log_level: str = "INFO"
    log_requests: bool = True
    max_content_length: int = 32 * 1024 * 1024
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    # "subprocess" survives gunicorn recycling the worker that accepted the request.
    training_runner: str = "subprocess"
    training_timeout_seconds: float = 6 * 3600
    # A run refreshes its heartbeat this often; any reader fails a run silent for longer than the stale bound.
    training_heartbeat_seconds: float = 5.0
    training_stale_seconds: float = 30.0
    # Runs in `training` at once, over every host: each takes a core, and an editor's key could take them all.
    training_max_runs: int = 2
    sqlite_busy_timeout_ms: int = 30_000
    pool_size: int = 5
    # Factor models over at least this many items serve from an approximate nearest-neighbour index.
    ann_min_items: int = 200_000
    # With the index: the most active known users whose candidates training searches ahead (about 1.7 kB each per worker).
    ann_precomputed_users: int = 50_000
    # Model versions that running and paused experiments' arms may name between them: every worker keeps
    # each of them loaded (hundreds of megabytes at a million items), so a start adding one past it is a 409.
    max_served_versions: int = 4
    # Signs the console's session cookie; every worker and host must share it. Empty: the
    # console makes a random one per process (tests and dev only: sessions then break across workers).
    secret_key: str = field(default="", repr=False)
    testing: bool = False


    def __post_init__(self) -> None:
        if self.training_runner not in {"subprocess", "thread"}:
            raise ValueError("TRAINING_RUNNER must be 'subprocess' or 'thread'")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"LOG_LEVEL {self.log_level!r} is not a logging level; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        if self.max_content_length <= 0:
            raise ValueError("MAX_CONTENT_LENGTH must be positive")
        problem = _database_url_problem(self.database_url)
        if problem is not None:
            raise ValueError(problem)
        if self.ann_min_items < 0:
            raise ValueError("ANN_MIN_ITEMS cannot be negative")
        if self.ann_precomputed_users < 0:
            raise ValueError("ANN_PRECOMPUTED_USERS cannot be negative")
        if self.max_served_versions < 0:
            raise ValueError("MAX_SERVED_VERSIONS cannot be negative")
        if self.pool_size < 1:
            raise ValueError("DB_POOL_SIZE must be at least 1")
        if self.secret_key and len(self.secret_key) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters; make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'")
        if self.sqlite_busy_timeout_ms < 0:
            raise ValueError("SQLITE_BUSY_TIMEOUT_MS cannot be negative")
        if self.training_max_runs < 1:
            raise ValueError("TRAINING_MAX_RUNS must be at least 1")
        if not 0 < self.training_timeout_seconds < float("inf"):
            raise ValueError("TRAINING_TIMEOUT_SECONDS must be a positive number of seconds")
        if not 0 < self.training_heartbeat_seconds < self.training_stale_seconds / 2:
            raise ValueError("TRAINING_HEARTBEAT_SECONDS must be positive and less than half of TRAINING_STALE_SECONDS, so that one late heartbeat does not fail a live run")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        """Build a config from environment variables, then apply explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (var, parse) in _ENV.items():
            if env.get(var):
                try:
                    values[name] = parse(env[var])
                except ValueError as exc:
                    if parse in _KINDS:  # int() and float() would quote only the value, not the variable
                        raise ValueError(f"{var} must be {_KINDS[parse]}, got {env[var]!r}") from None
                    raise ValueError(f"{var}: {exc}") from None
        values.update(overrides)
        return cls(**values)

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is the embedded SQLite database."""
        return self.database_url.startswith("sqlite")

    def as_env(self) -> dict[str, str]:
        """Environment variables that reproduce this config in a child process."""
        weights = ",".join(f"{k}={v}" for k, v in self.event_weights.items())
        return {
            "DATABASE_URL": self.database_url,
            "MODEL_DIR": str(self.model_dir),
            "LOG_LEVEL": self.log_level,
            "EVENT_WEIGHTS": weights,
            "TRAINING_HEARTBEAT_SECONDS": repr(self.training_heartbeat_seconds),
            "TRAINING_STALE_SECONDS": repr(self.training_stale_seconds),
            "ANN_MIN_ITEMS": str(self.ann_min_items),
            "ANN_PRECOMPUTED_USERS": str(self.ann_precomputed_users),
            "MAX_SERVED_VERSIONS": str(self.max_served_versions),
        }

