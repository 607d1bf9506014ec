"""Gunicorn settings, read from the environment: `gunicorn -c service/gunicorn_conf.py wsgi:app`."""
import atexit
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any

from gunicorn import glogging
from gunicorn import util as gunicorn_util

from service.config import Config
from service.http.errors import error_body

# A bad environment variable stops the master with one line before any worker starts:
# a worker that failed on it would print a traceback, once per worker.
try:
    Config.from_env()
except ValueError as exc:
    print(f"stickyloop: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


def _whole(name: str, default: int, least: int = 0) -> int:
    """A whole-number setting from the environment, at least `least`, or one line naming it and a stop.

    gunicorn takes 0 workers and serves nothing, and 0 threads crashes each worker with a traceback.
    """
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < least:
        print(f"stickyloop: {name} must be a whole number of at least {least}, got {text!r}", file=sys.stderr)
        raise SystemExit(2) from None
    return value


def _cannot_write(folder: Any) -> OSError | None:
    """Why a file cannot be made in `folder` (made first when missing), or None when one can."""
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        return exc
    return None


bind = os.environ.get("BIND", "127.0.0.1:8000")
_port = bind.rpartition(":")[2]
if not bind.startswith(("unix:", "fd://")) and _port.isdigit() and int(_port) > 65535:
    print(f"stickyloop: BIND {bind!r} names a port over 65535", file=sys.stderr)
    raise SystemExit(2)
workers = _whole("WEB_CONCURRENCY", 4, least=1)
# The service's per-thread connections and locks assume real threads: gevent or eventlet would need their own patching.
_WORKER_CLASSES = ("gthread", "sync")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
if worker_class not in _WORKER_CLASSES:
    print(f"stickyloop: GUNICORN_WORKER_CLASS must be one of {', '.join(_WORKER_CLASSES)}, got {worker_class!r}", file=sys.stderr)
    raise SystemExit(2)
threads = _whole("GUNICORN_THREADS", 4, least=1)


def _no_wait_for_first_bytes() -> None:
    """gthread waits up to 5 s in a pool thread for a new connection's first bytes before handing a silent one
    back to its poller: a few connections opened and left silent held every thread of every worker, and
    /healthz waited a minute behind 24 of them. Asking the socket without waiting hands a silent connection
    back at once; the poller gives it a thread when its request arrives, as it does for a kept-alive one.
    (Only the first wait: the same 5 s also bounds draining an unread body, which keep-alive needs.)"""
    from gunicorn.workers import gthread

    waits = getattr(gthread, "TConn", None) and getattr(gthread.TConn, "wait_for_data", None)
    # An older gunicorn has no wait (a buffering proxy in front is its only guard, operations.md); a reload
    # (HUP) reads this file again and finds the wait already replaced.
    if waits is None or getattr(waits, "asks_without_waiting", False):
        return

    def ready_now(conn: Any, timeout: float) -> bool:
        return bool(waits(conn, 0.0))

    ready_now.asks_without_waiting = True  # type: ignore[attr-defined]
    gthread.TConn.wait_for_data = ready_now


_no_wait_for_first_bytes()
timeout = _whole("GUNICORN_TIMEOUT", 60)
graceful_timeout = _whole("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _whole("GUNICORN_KEEPALIVE", 5)
max_requests = _whole("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _whole("GUNICORN_MAX_REQUESTS_JITTER", 0)
# gunicorn 27's control socket is one path per user (~/.gunicorn/gunicorn.ctl): two servers on a
# host took it from each other, and stopping one removed the other's. Nothing here uses it.
control_socket_disable = True
# The app writes one structured JSON line per request; gunicorn's own access
# log is off unless asked for, so that each request is logged once.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None


# An API key ("sl_" and 43 URL-safe characters), and the credentials after any Authorization scheme or
# "Bearer": a malformed Authorization line ("Authorization Bearer sl_...", no colon) is quoted whole in
# gunicorn's "Invalid request" warning. A user id such as "ssl_customer" is no key.
_SECRETS = re.compile(r"(?i)((?:authorization\W*[A-Za-z]+|bearer)\s+)[^\s'\"]+|\bsl_[A-Za-z0-9_-]{8,}")


def _redacted(match: re.Match[str]) -> str:
    return f"{match.group(1)}[redacted]" if match.group(1) else "sl_[redacted]"


class BoundedLogger(glogging.Logger):
    """gunicorn's own lines, cut to LOGGED_CHARS: its "Invalid request" warning quotes the request line or a
    header as repr(), so 8 KB of control bytes sent without a key made a 32 KB line."""

    LOGGED_CHARS = 512

    def _cut(self, msg: Any, args: tuple[Any, ...]) -> str:
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):  # a message that is not a format: said as it is, its arguments after it
            text = " ".join(map(str, (msg, *args)))
        text = _SECRETS.sub(_redacted, text)
        return text if len(text) <= self.LOGGED_CHARS else f"{text[:self.LOGGED_CHARS]}... ({len(text)} characters)"

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().critical(self._cut(msg, args), **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().error(self._cut(msg, args), **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().warning(self._cut(msg, args), **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().info(self._cut(msg, args), **kwargs)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().debug(self._cut(msg, args), **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().exception(self._cut(msg, args), **kwargs)


class JsonAccessLog(BoundedLogger):
    """gunicorn's access log as one JSON object a line. A JSON template filled in by gunicorn escapes `"`
    but not `\\`: a request line holding one made the line unreadable, or read as another request."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if not getattr(self, "access_log_enabled", True):  # gunicorn 24 on; only used when the log is asked for
            return
        atoms = self.atoms(resp, req, environ, request_time)
        line = {"remote": atoms["h"], "request": atoms["r"], "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"], "bytes": atoms["B"], "duration_us": atoms["D"],
                "request_id": atoms.get("{x-request-id}o")}
        self.access_log.info(json.dumps(line, default=str))


logger_class = JsonAccessLog if accesslog else BoundedLogger
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
raw_env = ["OPENBLAS_NUM_THREADS=1"]
# gunicorn caps the request line at 8,190 bytes (0 would lift the cap, and with it any bound
# on what one client makes a worker buffer); every documented query parameter fits in it,
# which is why RecommendQuery bounds `exclude`. Header fields keep the same size: the only
# header the API reads is a short bearer key. Longer ones get a 414 or a 431 from gunicorn
# itself, before any worker's app sees them, in the contract's error shape (below).
limit_request_line = 8190
limit_request_field_size = 8190

_REFUSALS = {
    414: "the request line (method, path and query string) is over 8,190 bytes",
    431: "a header is over 8,190 bytes, or the request has over 100 headers",
}


def _write_error(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's own refusals (request line or header too long, a malformed request) as JSON in the contract's error shape, not HTML."""
    said = message.strip().splitlines()[0][:200] if message.strip() else reason.lower()
    body = error_body(status, _REFUSALS.get(status, said))
    head = f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


# Every worker's error path calls util.write_error at the time of the error, so replacing it
# here, in the master before it forks, covers every worker class.
gunicorn_util.write_error = _write_error

# Prometheus counters from every worker are merged through files in this folder; one made here
# is removed when the server stops (they had piled up in /tmp, one per start).
_OWN_METRICS_DIR: str | None = None
# The master's pid; `on_starting` takes it again after a daemonising fork (`--daemon`) has changed it.
_MASTER_PID = os.getpid()


def _remove_metrics_dir() -> None:
    """Remove the metrics folder this server made: from the master only, since workers exit through atexit too."""
    if _OWN_METRICS_DIR is not None and os.getpid() == _MASTER_PID:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


_given_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _given_metrics_dir:
    # prometheus_client writes each worker's counters there on every request: a folder that cannot be
    # made or written turned every request, /healthz too, into a 500.
    _unwritable = _cannot_write(_given_metrics_dir)
    if _unwritable is not None:
        print(f"stickyloop: PROMETHEUS_MULTIPROC_DIR {_given_metrics_dir!r} cannot be written ({_unwritable.strerror or _unwritable}); unset it or fix the folder", file=sys.stderr)
        raise SystemExit(2)
else:
    _OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="stickyloop-prom-")
    # gunicorn calls on_exit only when it halts after serving; a server that never started (its
    # port taken, a bad setting) leaves through sys.exit, which runs this.
    atexit.register(_remove_metrics_dir)


# Console sessions are signed with SECRET_KEY and any worker may serve the next page; a key
# made here is inherited by every forked worker, so sign-ins last until this server restarts.
# Said after every setting above is checked, so that a bad one stops the server with its own line alone.
if not os.environ.get("SECRET_KEY"):
    os.environ["SECRET_KEY"] = secrets.token_hex(32)
    print("stickyloop: SECRET_KEY is not set; console sign-ins last until this server restarts (make run keeps one in instance/secret_key)", file=sys.stderr)


def on_starting(server: Any) -> None:
    """Note the master's pid, as it is once daemonised."""
    global _MASTER_PID
    _MASTER_PID = os.getpid()


def post_worker_init(worker: Any) -> None:
    """Quit at once on the first SIGINT or SIGQUIT, and let the second do nothing.

    Ctrl-C reaches every process of the terminal's group: a worker got SIGINT, then the master's
    SIGQUIT, and gthread's quit, which shuts its thread pool down under a lock, could run inside
    itself (or inside the pool's own `submit`) and wait on that lock for good; the master killed such
    a worker 30 s later, "Perhaps out of memory?". Exiting without the pool's lock is as quick: the
    interpreter's exit lets the pool's threads finish what they hold and joins them.
    """
    quitting: list[bool] = []

    # A flag, not SIG_IGN: a signal already pending when its handler is swapped for SIG_IGN makes
    # Python raise "Signal 3 ignored due to race condition" wherever the worker happens to be.
    def quit_now(sig: int, frame: Any) -> None:
        if quitting:
            return
        quitting.append(True)
        worker.alive = False
        worker.cfg.worker_int(worker)
        sys.exit(0)

    signal.signal(signal.SIGINT, quit_now)
    signal.signal(signal.SIGQUIT, quit_now)


def on_exit(server: Any) -> None:
    """Remove the metrics folder this server made (gunicorn calls this in the master only)."""
    if _OWN_METRICS_DIR is not None:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    """Drop a dead worker's live gauges and fold its counts into the dead workers' totals."""
    from prometheus_client import multiprocess

    from service.http.metrics_folder import fold_dead_worker

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    try:
        multiprocess.mark_process_dead(worker.pid, folder)
        if not fold_dead_worker(worker.pid, folder):
            server.log.warning("stickyloop: metrics of worker %s left unfolded: scrapes held the folder", worker.pid)
    except Exception as exc:  # noqa: BLE001 - an exception here would stop the master, and every worker with it
        server.log.warning("stickyloop: metrics of worker %s left unfolded: %s", worker.pid, exc)


# How long startup waits for the database before serving anyway (requests then answer 503).
DATABASE_CHECK_SECONDS = 3.0


def when_ready(server: Any) -> None:
    """Name the database, and say in one line when it cannot be reached or its schema is not this
    release's; /readyz answers 503 until both are put right."""
    from sqlalchemy.engine import make_url

    from service.errors import Unavailable
    from service.store.database import Database, unavailable_on_failure
    from service.store.migrate import schema_problem

    config = Config.from_env()
    unwritable = _cannot_write(config.model_dir)
    if unwritable is not None:
        server.log.warning("stickyloop: MODEL_DIR %s cannot be written (%s): workers read models from the database, and training started on this host fails", config.model_dir, unwritable.strerror or unwritable)
    # Without the query too: psycopg reads a password from ?password= as well.
    server.log.info("stickyloop: database %s", make_url(config.database_url).set(query={}).render_as_string(hide_password=True))
    db = Database(config.database_url, config.sqlite_busy_timeout_ms, pool_size=1)
    problems: list[str] = []

    def ping() -> None:
        try:
            with unavailable_on_failure():
                db.ping()
                schema = schema_problem(db)
            if schema is not None:
                server.log.warning("stickyloop: %s; /readyz answers 503 until then", schema)
        except Unavailable as exc:
            problems.append(exc.message)
        finally:
            db.dispose()

    # A database host that drops packets would hold the connection attempt for minutes.
    check = threading.Thread(target=ping, daemon=True)
    check.start()
    check.join(DATABASE_CHECK_SECONDS)
    if check.is_alive():
        problems.append(f"the database has not answered within {DATABASE_CHECK_SECONDS:.0f} s")
    if problems:
        server.log.warning("stickyloop: serving without the database for now: %s", problems[0])
