"""Shared setup for benchmarks: a fresh database, keys and synthetic data loaded fast."""
from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recommender.synthetic import generate  # noqa: E402
from service.http.app import create_app  # noqa: E402
from service.usecases.keys import create_key  # noqa: E402
from service.config import Config  # noqa: E402
from service.store.migrate import upgrade  # noqa: E402
from service.store.catalogue import upsert_items  # noqa: E402
from service.store.events import insert_events  # noqa: E402


def _exit_on_terminate(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def fresh_config(name: str) -> Config:
    """A new SQLite database under a temp folder, or a new database on the PostgreSQL server BENCH_DATABASE_URL names.

    Both go when the benchmark exits, stopped (SIGTERM, Ctrl-C) or not: a run's models and
    database reach gigabytes (1.3 GB for bench/quality.py), and they had piled up in the temp folder.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"stickyloop-bench-{name}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    signal.signal(signal.SIGTERM, _exit_on_terminate)  # atexit runs on sys.exit, not on a signal's default death
    server = os.environ.get("BENCH_DATABASE_URL")
    url = _own_postgres_database(server, name) if server else f"sqlite:///{folder / 'bench.db'}"
    return Config(database_url=url, model_dir=folder / "models", log_level="WARNING", log_requests=False, training_runner="thread")


def _own_postgres_database(server: str, name: str) -> str:
    """A database of this run's own on the server, dropped when the benchmark exits."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")
    database = f"stickyloop_bench_{name.replace('-', '_')}_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))

    atexit.register(drop)
    return make_url(server).set(database=database).render_as_string(hide_password=False)


def prepare(config: Config):  # noqa: ANN201 - returns the app's services
    """Migrate and answer the services of an app on `config`."""
    app = create_app(config)
    svc = app.extensions["stickyloop"]
    upgrade(svc.db)
    return svc


def load_synthetic(svc, n_users: int, n_items: int, n_events: int, seed: int = 1, say=print) -> None:  # noqa: ANN001
    """Items and events straight through the stores (not HTTP), in 10,000-row transactions."""
    data = generate(n_users, n_items, n_events, seed=seed, start=time.time() - 90 * 86_400)
    items = [{"item_id": f"i{i}", "category": f"c{c}", "available": True} for i, c in enumerate(data.item_categories)]
    for start in range(0, len(items), 10_000):
        upsert_items(svc.db, items[start : start + 10_000])
    started = time.perf_counter()
    for start in range(0, n_events, 10_000):
        stop = min(start + 10_000, n_events)
        rows = [
            {"event_id": f"e{k}", "user_id": f"u{data.users[k]}", "item_id": f"i{data.items[k]}", "type": str(data.types[k]), "ts": float(data.timestamps[k]),
             "value": None if math.isnan(data.values[k]) else float(data.values[k])}
            for k in range(start, stop)
        ]
        insert_events(svc.db, rows)
        if (stop // 10_000) % 50 == 0 or stop == n_events:
            say(f"  loaded {stop:,} / {n_events:,} events ({stop / (time.perf_counter() - started):,.0f}/s)")
    analyze(svc)


def server_env(config: Config) -> dict[str, str]:
    """The environment of a benchmarked gunicorn: the config, quiet logs."""
    return {**config.as_env(), "LOG_REQUESTS": "false", "LOG_LEVEL": "WARNING"}


def post_json(base: str, path: str, body: bytes, key: str, timeout: float = 300.0) -> dict:
    """POST an encoded JSON body with a bearer key; answer the decoded reply."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def keys(svc) -> dict[str, str]:  # noqa: ANN001
    """One key per role."""
    return {role: create_key(svc.db, role, f"bench {role}")[1] for role in ("storefront", "editor", "analyst", "admin")}


def running_ab(svc, users: int, **changes) -> str:  # noqa: ANN001, ANN003
    """Create and start the demo A/B experiment (with `changes`) and expose `users` users (u0, u1, ...) directly; answer its key."""
    from service.usecases import experiments
    from service.usecases.assignment import assign
    from service.usecases.demo_experiments import AB

    definition = {**AB, **changes}
    experiments.create(svc.db, definition)
    experiments.move(svc.db, svc.experiment_cache, definition["key"], "start", svc.config.max_served_versions)
    for u in range(users):
        assign(svc.db, svc.experiment_cache, definition["key"], f"u{u}", time.time())
    analyze(svc)
    return str(definition["key"])


def analyze(svc) -> None:  # noqa: ANN001
    """VACUUM ANALYZE on PostgreSQL after a bulk load, as operations.md tells operators and autovacuum would do within a minute.

    Measuring seconds after the load would otherwise plan on the empty tables' statistics,
    read rows an index could answer from the heap (no page is marked all-visible yet), and
    share the cores with autovacuum catching up.
    """
    if not svc.db.is_sqlite:
        with svc.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def settle(svc) -> None:  # noqa: ANN001
    """CHECKPOINT on PostgreSQL: write out what a bulk load or large artifacts left in memory before measuring.

    Left to itself, the checkpointer writes them during the next minutes, on the same cores as the
    server being measured (gigabytes of artifacts at a million items).
    """
    if not svc.db.is_sqlite:
        with svc.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("CHECKPOINT")


def summary(**figures: float) -> None:
    """A last line that `bench/run_all.py` gathers into its table across databases."""
    print("summary: " + json.dumps({k: round(v, 3) for k, v in figures.items()}), flush=True)
