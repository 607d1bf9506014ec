"""Browser tests: the operating system's Chromium, driven by Playwright, against a real gunicorn loaded with the demo data.

Without Chromium (or Playwright) the tests are skipped with a banner saying so, except
under CI=true, where a skipped browser test would hide a broken console: there they fail.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from service.config import Config
from service.http.app import create_app
from service.usecases import model_training as training
from service.usecases import training_run
from service.usecases.demo import load_demo
from service.usecases.demo_experiments import load_demo_experiments
from service.usecases.keys import ROLES, create_key
from tests.conftest import _wipe
from tests.server import Server, gunicorn

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
_report: dict[str, list[str]] = {"skipped": [], "timings": []}


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "no chromium on PATH (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The OS Chromium; Playwright's own browser download cannot reach the network here."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the browser tests, but {reason}", pytrace=False)
        _report["skipped"].append(reason)
        pytest.skip(f"browser tests skipped: {reason}")
    return str(shutil.which("chromium") or shutil.which("chromium-browser"))


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    """One Chromium for the session; each test opens its own context (its own cookies)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path)
        yield chromium
        chromium.close()


@dataclass
class Demo:
    """The running server and one raw API key per role."""

    server: Server
    keys: dict[str, str]

    @property
    def base(self) -> str:
        """The server's address."""
        return self.server.base


@pytest.fixture(scope="module")
def demo(chromium_path: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo shop (300 users, 200 items, 5,000 events, its experiments and a model) served by two gunicorn workers."""
    folder = tmp_path_factory.mktemp("browser")
    config = Config(database_url=database_url, model_dir=folder / "models", training_runner="thread", testing=True, log_requests=False, log_level="WARNING")
    app = create_app(config)
    svc = app.extensions["stickyloop"]
    _wipe(svc.db)
    for _ in load_demo(svc, 300, 200, 5000):
        pass
    for _ in load_demo_experiments(svc, 300):
        pass
    record = training.request_training(svc.db, config, "als", {"factors": 8, "iterations": 5}, True)
    assert training_run.run_training(svc.db, config, record.version).status == "ready"
    keys = {role: create_key(svc.db, role, f"browser {role}")[1] for role in ROLES}
    # Both workers must share the key that signs the session cookie; INFO logs carry each request's server time.
    env = {
        "DATABASE_URL": database_url, "MODEL_DIR": str(config.model_dir), "SECRET_KEY": secrets.token_hex(32),
        "LOG_LEVEL": "INFO", "LOG_REQUESTS": "true", "TRAINING_RUNNER": "thread",
    }
    ARTIFACTS.mkdir(exist_ok=True)
    with gunicorn(env, workers=2) as server:
        yield Demo(server, keys)
    _report["timings"] = _timings(server.log_path)
    (ARTIFACTS / "timings.txt").write_text("\n".join(_report["timings"]) + "\n")
    svc.db.dispose()


def _timings(log_path: Path) -> list[str]:
    """The slowest server time of each console page requested, from the request log lines."""
    slowest: dict[str, float] = defaultdict(float)
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        path = str(entry.get("path", ""))
        if entry.get("msg") == "request" and path.startswith("/ui") and "/static/" not in path:
            name = f"{entry['method']} {path}"
            slowest[name] = max(slowest[name], float(entry["duration_ms"]))
    return [f"{ms:8.1f} ms  {name}" for name, ms in sorted(slowest.items(), key=lambda kv: -kv[1])]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly when the browser tests were skipped; otherwise where the screenshots are and how long pages took."""
    if _report["skipped"]:
        terminalreporter.write_sep("=", "BROWSER TESTS SKIPPED", yellow=True, bold=True)
        terminalreporter.write_line(f"tests/browser did not run: {_report['skipped'][0]}. Under CI=true this fails instead.")
    if _report["timings"]:
        terminalreporter.write_sep("-", f"console pages, slowest server time each (screenshots in {ARTIFACTS})")
        for line in _report["timings"]:
            terminalreporter.write_line(line)
