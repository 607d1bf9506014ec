"""The console at /ui: HTML pages for product managers and analysts over the same use cases as the API.

Pages are rendered on the server (charts as inline SVG) and need no JavaScript; only the
API reference runs the vendored Swagger UI. Routes here never use the `endpoint`
decorator, so they stay out of /openapi.json.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Request, current_app, g, render_template
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from service.config import Config
from service.errors import ServiceError
from service.http.console import choices, formatting
from service.http.console.session import CSRF_FIELD, can, csrf_token
from service.http.endpoint import ADMIN, ANALYST, EDITOR, READ_EXPERIMENTS
from service.http.errors import told

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__, url_prefix="/ui", template_folder="templates", static_folder="static")

# Swagger UI injects its own style elements and data: images; nothing else is allowed to load or run.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
_TITLES = {403: "Not allowed", 404: "Not found", 405: "Method not allowed", 409: "Not possible now", 422: "Not valid", 503: "Unavailable"}


class ConsoleSessions(SecureCookieSessionInterface):
    """The signed cookie session, opened for console pages only.

    The cookie's path is /ui, so no other request carries it, and the API authenticates
    every call by its key: opening an empty session there built a signing serializer on
    every API request for nothing. Elsewhere the session is Flask's null session, and
    no answer outside /ui can set the cookie.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(bp.url_prefix or "/ui"):
            return None
        return super().open_session(app, request)


def init_console(app: Flask) -> None:
    """Configure the signed session cookie and register the console's pages."""
    config: Config = app.config["STICKYLOOP"]
    app.secret_key = config.secret_key or secrets.token_hex(32)
    app.extensions["console_random_key"] = not config.secret_key and not config.testing
    app.config.update(
        SESSION_COOKIE_NAME="stickyloop_console",
        SESSION_COOKIE_PATH="/ui",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Off so that sign-in works over http://127.0.0.1; behind TLS the cookie should be Secure.
        SESSION_COOKIE_SECURE=False,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
    )
    app.session_interface = ConsoleSessions()
    app.jinja_env.autoescape = True
    app.register_blueprint(bp)


@bp.before_request
def _warn_random_key() -> None:
    # Said once per process, on its first console page rather than in every CLI command.
    if current_app.extensions.pop("console_random_key", False):
        log.warning("SECRET_KEY is not set: this process signs console sessions with a random key, so sign-ins break across workers and restarts")


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token,
        "csrf_field": CSRF_FIELD,
        "can": can,
        "principal": g.get("principal"),
        "EDITOR": EDITOR,
        "READ_EXPERIMENTS": READ_EXPERIMENTS,
        "ANALYST": ANALYST,
        "ADMIN": ADMIN,
        "fmt": formatting,
        "choices": choices,
    }


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype in ("text/html", "text/csv"):
        response.headers.setdefault("Cache-Control", "no-store")  # pages and downloads show data of one signed-in key
    return response


def error_page(status: int, message: str) -> tuple[str, int]:
    """The console's own error page."""
    return render_template("console/error.html", status=status, title=_TITLES.get(status, "Error"), message=message), status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return error_page(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError) -> tuple[str, int, dict[str, str]]:
    status, message, retry = told(exc)  # as the API tells it: a 503 names no database host, and is logged once in a while
    page, _ = error_page(status, message)
    return page, status, {"Retry-After": "1"} if retry else {}


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int]:
    log.exception("console page failed", extra={"request_id": g.get("request_id")})
    return error_page(500, "The page failed to render; the error is in the service's log.")


# The pages attach their routes to `bp`; imported last because they import it.
from service.http.console import at_risk, auth, experiment_settings, experiments, models, plans, results, users, what_if  # noqa: E402,F401
