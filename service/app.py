"""The Flask application factory."""
from __future__ import annotations

import importlib

from flask import Flask
from threadpoolctl import threadpool_limits

from service.config import Config
from service.db import Database
from service.errors import register_error_handlers
from service.observability import configure_logging, init_request_tracking
from service.state import Services

BLUEPRINTS = (
    "health",
    "keys",
    "items",
    "events",
    "models",
    "recommendations",
    "experiments",
    "assignments",
    "outcomes",
    "rewards",
    "results",
)


def create_app(config: Config | None = None) -> Flask:
    """Build the app from `config`, or from the environment when none is given."""
    config = config or Config.from_env()
    # Serving multiplies one user's factors by the item factors: a product of tens of
    # microseconds, which waking a BLAS thread pool between requests turns into
    # milliseconds. Training runs implicit's own threads and does not need BLAS ones.
    threadpool_limits(1, "blas")
    configure_logging(config.log_level)
    app = Flask(__name__, instance_path=str(config.model_dir.parent.resolve()))
    app.config.update(MAX_CONTENT_LENGTH=config.max_content_length, TESTING=config.testing, STICKYLOOP=config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from service.assigning import DefinitionCache
    from service.serving import ModelCache

    db = Database(config.database_url, config.sqlite_busy_timeout_ms, config.pool_size)
    app.extensions["stickyloop"] = Services(config=config, db=db, models=ModelCache(db, config.model_dir), definitions=DefinitionCache())

    register_error_handlers(app)
    init_request_tracking(app, config.log_requests)
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(f"service.blueprints.{name}").bp)

    from service.cli import register_commands

    register_commands(app)
    return app
