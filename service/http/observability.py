"""Request ids, one structured log line per request, and Prometheus metrics per endpoint."""
from __future__ import annotations

import logging
import os
import re
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from service.http.metrics_folder import scrape_lock
from service.http.spec import plain_rule

log = logging.getLogger("stickyloop.request")
_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Load balancers and Prometheus call these every few seconds: a line for each answer that all is well
# buried the requests worth reading (one probe server logged 8,636). They are counted in /metrics,
# and logged when they fail.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})

REQUESTS = Counter("stickyloop_http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "stickyloop_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# A path and a method are the client's to write: a line keeps this much of each, and the path's full length.
LOGGED_CHARS = 256

# The methods counted by name; any other a client invents counts as "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def init_request_tracking(app: Flask, log_requests: bool) -> None:
    """Give every request an id, log it once answered and count it."""

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _RID.fullmatch(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = plain_rule(request.url_rule.rule) if request.url_rule is not None else "unmatched"
        # A method is the client's to name: each new one would be a new series in every worker.
        method = request.method if request.method in _METHODS else "other"
        REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
        LATENCY.labels(method, endpoint).observe(elapsed)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if log_requests and not (request.path in _PROBES and response.status_code < 400):
            path = request.path
            extra = {
                "request_id": g.get("request_id"),
                "method": request.method[:LOGGED_CHARS],
                "path": path[:LOGGED_CHARS],
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 3),
            }
            principal = g.get("principal")
            if principal is not None:
                extra["key_id"] = principal.key_id  # who asked, so that an admin's changes can be traced to a key
            if len(path) > LOGGED_CHARS:
                extra["path_length"] = len(path)
            log.info("request", extra=extra)
        return response


def metrics_response() -> Response:
    """Prometheus text, merged across gunicorn workers when multiprocess mode is on."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        with scrape_lock(folder):
            data = generate_latest(registry)
    else:
        data = generate_latest()
    return Response(data, content_type=CONTENT_TYPE_LATEST)
