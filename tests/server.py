"""Run the service under a real gunicorn on a free loopback port."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A running gunicorn and a tiny JSON client for it."""

    def __init__(self, base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.base = base
        self.process = process
        self.log_path = log_path

    def request(self, method: str, path: str, body: Any = None, key: str | None = None, timeout: float = 60) -> tuple[int, Any]:
        """Send one request; answer (status, parsed JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes under the master."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]


class _PortTaken(Exception):
    """Another process took the free port between our look and gunicorn's bind."""


@contextmanager
def gunicorn(
    env: dict[str, str], workers: int = 2, extra_args: list[str] | None = None, timeout: float = 60.0, app: str = "wsgi:app",
    log_dir: Path | None = None,
) -> Iterator[Server]:
    """Start gunicorn with the project's config on `app`, wait until /healthz answers, stop it afterwards.

    Its output goes to a file in `log_dir`, by default the parent of `env`'s MODEL_DIR.
    """
    for attempt in range(3):
        server, log = _start(env, workers, extra_args or [], app, log_dir)
        try:
            _wait_until_ready(server, workers, timeout)
            break
        except _PortTaken:
            _stop(server, log)
            if attempt == 2:
                raise RuntimeError(f"three free ports were taken before gunicorn could bind them; see {server.log_path}") from None
        except BaseException:
            _stop(server, log)
            raise
    try:
        yield server
    finally:
        _stop(server, log)


def _start(env: dict[str, str], workers: int, extra_args: list[str], app: str, log_dir: Path | None) -> tuple[Server, IO[bytes]]:
    port = free_port()
    log_path = (log_dir or Path(env.get("MODEL_DIR", "/tmp"))) / f"gunicorn-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers), "OPENBLAS_NUM_THREADS": "1"}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "service/gunicorn_conf.py", *extra_args, app],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own, as under a terminal: a test may signal it whole
    )
    return Server(f"http://127.0.0.1:{port}", process, log_path), log


def _wait_until_ready(server: Server, workers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            said = server.log_path.read_text(errors="replace")
            if "Connection in use" in said:  # the port went to another process after free_port looked
                raise _PortTaken()
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}; see {server.log_path}:\n{said[-3000:]}")
        try:
            # Briefly: should the port have gone to another listener, a long wait here would hide gunicorn's exit.
            if server.request("GET", "/healthz", timeout=5)[0] == 200 and len(server.worker_pids()) >= workers:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not answer within {timeout} s; see {server.log_path}")
        time.sleep(0.1)


def _stop(server: Server, log: IO[bytes]) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
    log.close()
