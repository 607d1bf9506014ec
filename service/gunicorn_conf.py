"""Gunicorn settings, read from the environment: `gunicorn -c service/gunicorn_conf.py wsgi:app`."""
import os
import tempfile

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))
# The app writes one structured JSON line per request; gunicorn's own access
# log is off unless asked for, so that each request is logged once.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = '{"remote": "%(h)s", "request": "%(r)s", "status": %(s)s, "bytes": %(B)s, "duration_us": %(D)s, "request_id": "%({x-request-id}o)s"}'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
raw_env = ["OPENBLAS_NUM_THREADS=1"]

# Prometheus counters from every worker are merged through files in this folder.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="stickyloop-prom-")


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    """Drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
