"""make run's first step: it refuses to start while this folder's server runs, or on an address in use.

A second make run beside the first shares its database, so its demo keys would revoke the ones
pasted from the first, whatever port it serves on. The step is run through make itself, with the
test's interpreter and without the install step.
"""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.server import free_port, gunicorn

ROOT = Path(__file__).resolve().parents[2]


def _not_serving(pid_file: Path, bind: str) -> subprocess.CompletedProcess[str]:
    command = ["make", "-s", "-o", "install", "not-serving", f"BIN={Path(sys.executable).parent}", f"RUN_PID_FILE={pid_file}", f"BIND={bind}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_make_run_refuses_while_this_folders_server_runs_on_any_port_and_names_its_pid(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "MODEL_DIR": str(tmp_path / "models"), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}
    pid_file = tmp_path / "gunicorn.pid"
    with gunicorn(env, workers=1) as server:
        pid_file.write_text(f"{server.process.pid}\n")
        refused = _not_serving(pid_file, f"127.0.0.1:{free_port()}")
    assert refused.returncode != 0
    said = refused.stderr.splitlines()[0]
    assert said.startswith("stickyloop: this folder's server") and f"kill {server.process.pid}" in said and "revoke" in said


def test_make_run_goes_ahead_past_a_stale_pid_file_and_removes_it_so_that_gunicorn_starts_over_it(tmp_path):
    # gunicorn refuses to start while its pid file names a live process, whatever that process is.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    other = subprocess.Popen(["sleep", "60"])
    try:
        for held in (str(gone.pid), str(other.pid), "-1", "0", "junk", ""):
            (tmp_path / "gunicorn.pid").write_text(f"{held}\n")
            done = _not_serving(tmp_path / "gunicorn.pid", f"127.0.0.1:{free_port()}")
            assert done.returncode == 0 and done.stderr == "", (held, done.stderr)
            assert not (tmp_path / "gunicorn.pid").exists() or held in ("junk", ""), held
    finally:
        other.kill()
        other.wait()


def test_make_run_on_an_address_another_program_holds_says_so_and_how_to_serve_elsewhere(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = _not_serving(tmp_path / "no-such.pid", f"127.0.0.1:{port}")
    assert refused.returncode != 0
    said = refused.stderr.splitlines()[0]
    assert said.startswith(f"stickyloop: 127.0.0.1:{port} is already in use;") and "`BIND=127.0.0.1:8001 make run`" in said
