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
from typing import Any, Iterator

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

    def request(self, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
        """Send one request; answer (status, parsed JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes under the master."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]


@contextmanager
def gunicorn(
    env: dict[str, str], workers: int = 2, extra_args: list[str] | None = None, timeout: float = 60.0, app: str = "wsgi:app"
) -> Iterator[Server]:
    """Start gunicorn with the project's config on `app`, wait until /healthz answers, stop it afterwards."""
    port = free_port()
    log_path = Path(env.get("MODEL_DIR", "/tmp")) / f"gunicorn-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers), "OPENBLAS_NUM_THREADS": "1"}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "service/gunicorn_conf.py", *(extra_args or []), app],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own, as under a terminal: a test may signal it whole
    )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log_path}:\n{log_path.read_text()[-3000:]}")
            try:
                if server.request("GET", "/healthz")[0] == 200 and len(server.worker_pids()) >= workers:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer within {timeout} s; see {log_path}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
