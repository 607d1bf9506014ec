"""The Flask application factory."""
from __future__ import annotations

import importlib

from flask import Flask, Response
from threadpoolctl import threadpool_limits

from service.config import Config
from service.http.cli import register_commands
from service.http.console import init_console
from service.http.paths import IdConverter, KeepEscapedSlashes, VersionConverter
from service.http.errors import allow_header, register_error_handlers
from service.http.observability import init_request_tracking
from service.logs import configure_logging
from service.usecases.context import Services

VIEWS = ("health", "keys", "items", "events", "models", "recommendations", "experiments", "layers", "assignments", "outcomes", "rewards", "results", "plans", "users")


class _App(Flask):
    """Flask, answering OPTIONS with 204 and `Allow`: its own answer was a 200 with an empty text/html body,
    where every other answer of the API is JSON or nothing at all."""

    def make_default_options_response(self) -> Response:
        allowed = super().make_default_options_response().allow
        response = Response(status=204)
        del response.headers["Content-Type"]  # no body, so no type
        response.headers["Allow"] = allow_header(allowed)
        return response


def create_app(config: Config | None = None) -> Flask:
    """Build the app from `config`, or from the environment when none is given."""
    config = config or Config.from_env()
    # Serving multiplies one user's factors by the item factors: a product of tens of
    # microseconds, which waking a BLAS thread pool between requests turns into
    # milliseconds. Training runs implicit's own threads and does not need BLAS ones.
    threadpool_limits(1, "blas")
    configure_logging(config.log_level)
    app = _App(__name__, instance_path=str(config.model_dir.parent.resolve()))
    app.config.update(MAX_CONTENT_LENGTH=config.max_content_length, TESTING=config.testing, STICKYLOOP=config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # werkzeug would answer /v1/users//x/... with a redirect to /v1/users/x/...: another user.
    app.url_map.merge_slashes = False
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["version"] = VersionConverter
    app.wsgi_app = KeepEscapedSlashes(app.wsgi_app)  # type: ignore[method-assign]
    app.extensions["stickyloop"] = Services.build(config)
    register_error_handlers(app)
    init_request_tracking(app, config.log_requests)
    for name in VIEWS:
        app.register_blueprint(importlib.import_module(f"service.http.views.{name}").bp)
    _refuse_head_where_get_records(app)
    init_console(app)
    register_commands(app)
    return app


def _refuse_head_where_get_records(app: Flask) -> None:
    """werkzeug answers HEAD by running the GET view; where a GET can record an exposure, HEAD is not a method at all.

    Taking it off the rule makes the router refuse it (405) before any view runs, and every
    405 of the path (a POST as well) lists the same methods in `Allow`.
    """
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions.get(rule.endpoint), "__api__", None)
        if spec is not None and spec.records and rule.methods is not None:
            rule.methods.discard("HEAD")
