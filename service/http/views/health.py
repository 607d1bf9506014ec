"""Liveness, readiness, metrics and API documentation."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template

from service.http.endpoint import endpoint, services
from service.http.errors import error_response, say_unavailable
from service.http.observability import metrics_response
from service.http.openapi import build_openapi
from service.http.schemas.system import Health

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@endpoint("Liveness: answers while the process runs", roles=None, tag="system", response=Health)
def healthz() -> Health:
    """Answer ok while the process runs."""
    return Health(status="ok")


@bp.get("/readyz")
@endpoint("Readiness: 200 when the database answers with the schema this release needs, 503 otherwise", roles=None, tag="system", response=Health, errors=(503,))
def readyz() -> Response | Health:
    """Check the database and its schema."""
    svc = services()
    # A database or role that does not exist, or a wrong password, raises HostCannot, answered as on every endpoint.
    problem = svc.unreachable()
    if problem is not None:
        say_unavailable(problem, "database unreachable")  # a probe every second through an outage: not a line a probe
        return _not_ready("the database is unreachable; check DATABASE_URL and that the server runs", retry=True)
    schema = svc.schema_problem()
    if schema is not None:
        say_unavailable(schema, "schema not ready")
        return _not_ready(schema, retry=False)
    return Health(status="ok")


def _not_ready(message: str, retry: bool) -> Response:
    """503, with Retry-After only where waiting can mend it, as on every other endpoint."""
    response = error_response(503, "unavailable", message)
    if retry:
        response.headers["Retry-After"] = "1"
    return response


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document, generated from the endpoint declarations."""
    return jsonify(_document())


@bp.get("/docs")
def docs() -> str:
    """A human-readable page listing every endpoint."""
    return render_template("docs.html", spec=_document())


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, built on first use: the routes never change while it runs, and building
    it costs some 30 times a /healthz, which anyone without a key could ask for again and again."""
    extensions = current_app.extensions
    if "stickyloop.openapi" not in extensions:
        extensions["stickyloop.openapi"] = build_openapi(current_app)
    return extensions["stickyloop.openapi"]  # type: ignore[no-any-return]


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics."""
    return metrics_response()
