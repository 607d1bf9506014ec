"""A real gunicorn with two workers, sharing the test database."""
from __future__ import annotations

import pytest

from tests.server import gunicorn


@pytest.fixture
def server(config, app, keys):
    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}
    with gunicorn(env, workers=2) as srv:
        yield srv


def test_two_workers_answer_health_and_authenticated_calls(server, keys):
    assert len(server.worker_pids()) == 2
    for _ in range(20):
        assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    assert server.request("GET", "/readyz")[0] == 200
    status, body = server.request("POST", "/v1/items", {"items": [{"item_id": "g-1", "category": "books"}]}, key=keys["storefront"])
    assert (status, body) == (200, {"upserted": 1})
    assert server.request("GET", "/v1/items/g-1", key=keys["storefront"])[1]["category"] == "books"
    assert server.request("GET", "/v1/items/g-1")[0] == 401
    assert server.request("GET", "/v1/keys", key=keys["storefront"])[0] == 403


def test_activation_switches_both_workers_with_no_failed_request(server, client, auth, keys):
    import threading

    from tests.helpers import train, two_tribes

    two_tribes(client, auth("storefront"))
    first = train(client, auth("editor"))
    second = train(client, auth("editor"), {"algorithm": "item_knn", "activate": False})
    assert first["status"] == second["status"] == "ready"
    path = "/v1/users/ua1/recommendations?n=5"
    assert {server.request("GET", path, key=keys["storefront"])[1]["model_version"] for _ in range(20)} == {first["version"]}

    statuses: list[int] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            statuses.append(server.request("GET", path, key=keys["storefront"])[0])

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for target in (second, first, second):
            status, body = server.request("POST", f"/v1/models/{target['version']}/activate", key=keys["editor"])
            assert status == 200 and body["active"] is True
            # Every later request, whichever worker takes it, serves the new version.
            versions = {server.request("GET", path, key=keys["storefront"])[1]["model_version"] for _ in range(30)}
            assert versions == {target["version"]}
    finally:
        stop.set()
        thread.join()
    assert statuses and set(statuses) == {200}


def test_same_arm_from_every_worker_and_after_a_restart(config, app, client, auth, keys, db):
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from service.store.tables import ExposureRow
    from tests.experiment_helpers import ab_definition, bandit_definition, running

    running(client, auth("editor"), ab_definition())
    running(client, auth("editor"), bandit_definition())
    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}
    calls = [(key, f"u{i % 30}") for key in ("points-q4", "bonus-bandit") for i in range(120)]

    def answers(srv) -> dict[tuple[str, str], set[str]]:
        def ask(call: tuple[str, str]) -> tuple[tuple[str, str], str]:
            status, body = srv.request("GET", f"/v1/experiments/{call[0]}/assignment?user_id={call[1]}", key=keys["storefront"])
            assert status == 200, body
            return call, body["arm"]

        seen: dict[tuple[str, str], set[str]] = {}
        with ThreadPoolExecutor(8) as pool:  # concurrent first requests land on both workers
            for call, arm in pool.map(ask, calls):
                seen.setdefault(call, set()).add(arm)
        return seen

    with gunicorn(env, workers=2) as srv:
        before = answers(srv)
    assert all(len(arms) == 1 for arms in before.values())
    with gunicorn(env, workers=2) as srv:
        after = answers(srv)
    assert after == before
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ExposureRow)) == 60


def test_gunicorns_own_warning_about_a_malformed_request_is_cut_short(server):
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(server.base)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"GET /" + b"\x01" * 4000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")  # 4 bytes logged a byte, as repr() writes it
        assert sock.recv(1024).startswith(b"HTTP/1.1 400")
    assert server.request("GET", "/healthz")[0] == 200
    lines = [line for line in server.log_path.read_text().splitlines() if "Invalid request" in line]
    assert lines and max(len(line) for line in lines) < 1_000


def test_a_key_in_a_malformed_authorization_line_stays_out_of_the_log(server):
    import socket
    from urllib.parse import urlsplit

    secret = "sl_" + "Zq9" * 14 + "x"
    basic = "YWRtaW46aHVudGVyMg=="
    address = urlsplit(server.base)
    # No colon; a control byte in the name; another scheme; and a user id that only looks like a key.
    for head, line in [("GET /v1/keys", f"Authorization Bearer {secret}"), ("GET /v1/keys", f"Authorization\x01: Bearer {secret}"),
                       ("GET /v1/keys", f"Authorization Basic {basic}"), ("GET /v1/users/ssl_customer_42\x01", "Accept: */*")]:
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(f"{head} HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n".encode())
            assert sock.recv(1024).startswith(b"HTTP/1.1 400")
    assert server.request("GET", "/healthz")[0] == 200
    log = server.log_path.read_text()
    assert "Invalid request" in log and "[redacted]" in log and secret not in log and secret[:20] not in log and basic not in log
    assert "ssl_customer_42" in log  # an id is not a key: operators read it as sent


def test_connections_left_silent_do_not_hold_the_threads_others_need(config, app):
    # gthread kept a pool thread waiting up to 5 s for a new connection's first bytes: eight silent
    # connections held a 2-thread worker's threads for some 20 s, and /healthz waited behind them.
    import signal
    import socket
    import time
    import urllib.request
    from urllib.parse import urlsplit

    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false",
           "GUNICORN_THREADS": "2"}
    def answers_beside_silent_connections(server) -> None:
        address = urlsplit(server.base)
        silent = [socket.create_connection((address.hostname, address.port), timeout=10) for _ in range(8)]
        try:
            # Far inside the 5 s a single silent connection would hold a thread: answered at all, not timed.
            with urllib.request.urlopen(server.base + "/healthz", timeout=3) as resp:
                assert resp.status == 200
            silent[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # a late request is still served
            assert silent[0].recv(1024).startswith(b"HTTP/1.1 200")
        finally:
            for sock in silent:
                sock.close()

    with gunicorn(env, workers=1) as server:
        answers_beside_silent_connections(server)
        before = server.worker_pids()
        server.process.send_signal(signal.SIGHUP)  # a reload reads the config again: the change must hold, once
        deadline = time.monotonic() + 30
        while not (server.worker_pids() and set(server.worker_pids()).isdisjoint(before)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(server.worker_pids()).isdisjoint(before)
        answers_beside_silent_connections(server)


def _healthz_count(server) -> float:
    import urllib.request

    with urllib.request.urlopen(server.base + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    line = next(l for l in text.splitlines() if l.startswith("stickyloop_http_requests_total{") and 'endpoint="/healthz"' in l and 'status="200"' in l)
    return float(line.rsplit(" ", 1)[1])


def test_recycled_workers_keep_their_counts_and_leave_one_file_of_each_kind(config, app, tmp_path):
    import time

    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false",
           "TMPDIR": str(tmp_path), "HOME": str(tmp_path), "GUNICORN_MAX_REQUESTS": "20"}  # TMPDIR: where it makes its metrics folder
    with gunicorn(env, workers=2) as server:
        (folder,) = tmp_path.glob("stickyloop-prom-*")
        before = _healthz_count(server)
        for _ in range(150):  # each worker is replaced every 20 requests: some 7 of them go
            assert server.request("GET", "/healthz")[0] == 200
        counted = _healthz_count(server)
        # A worker that has just served its last request is reaped a moment later; its counts are in the
        # totals either way.
        deadline = time.monotonic() + 30
        while any(len(list(folder.glob(f"{kind}_*.db"))) > 3 for kind in ("counter", "histogram")) and time.monotonic() < deadline:
            time.sleep(0.05)
        files = sorted(p.name for p in folder.glob("*.db"))
        assert counted - before == 150 and _healthz_count(server) - before == 150
    assert "counter_dead.db" in files and "histogram_dead.db" in files
    assert len([f for f in files if f.startswith("counter_")]) <= 3 and len([f for f in files if f.startswith("histogram_")]) <= 3, files


def test_ctrl_c_stops_every_worker_at_once_however_the_two_signals_meet(config, app, keys):
    # Ctrl-C signals the terminal's whole group: each worker got SIGINT and then the master's SIGQUIT,
    # and about one stop in four left a worker waiting on its thread pool's lock until the master killed
    # it ("Perhaps out of memory?") after the graceful timeout.
    import os
    import signal
    import time

    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false",
           "GUNICORN_GRACEFUL_TIMEOUT": "5"}
    for pause in (0.5, 1.0, 1.0, 1.5):
        with gunicorn(env, workers=2) as srv:
            for i in range(20):  # each on a new connection, so both workers' thread pools have threads
                assert srv.request("GET", f"/v1/users/u{i}/recommendations", key=keys["storefront"])[0] == 200
            time.sleep(pause)
            os.killpg(srv.process.pid, signal.SIGINT)
            assert srv.process.wait(timeout=60) == 0
        log = srv.log_path.read_text()
        assert "SIGKILL" not in log and "Traceback" not in log, log[-2000:]
