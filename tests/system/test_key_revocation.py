"""A revoked key fails on every worker of every host within 1 second (workers remember verified keys for at most that long)."""
from __future__ import annotations

import threading
import time

import pytest

from service.usecases.keys import KEY_CACHE_SECONDS
from tests.server import gunicorn


@pytest.fixture
def two_hosts(config, app, keys):
    """Two gunicorn servers (two workers each) on one database, as two hosts behind a load balancer would be."""
    env = {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}
    with gunicorn(env, workers=2) as first, gunicorn(env, workers=2) as second:
        yield first, second


def test_a_revoked_key_fails_everywhere_within_one_second(two_hosts, keys):
    hosts = two_hosts
    status, created = hosts[0].request("POST", "/v1/keys", {"role": "storefront", "name": "soon revoked"}, key=keys["admin"])
    assert status == 201
    calls: list[tuple[float, float, int]] = []  # (sent, answered, status)
    stop = threading.Event()

    def hammer(server):
        # A new connection per request, so requests spread over every worker of the host.
        while not stop.is_set():
            sent = time.monotonic()
            status = server.request("GET", "/v1/items/popular?n=1", key=created["key"])[0]
            calls.append((sent, time.monotonic(), status))

    threads = [threading.Thread(target=hammer, args=(server,)) for server in hosts for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)  # every worker has verified (and remembers) the key
        revoking = time.monotonic()
        assert hosts[1].request("DELETE", f"/v1/keys/{created['id']}", key=keys["admin"])[0] == 200
        revoked = time.monotonic()
        time.sleep(KEY_CACHE_SECONDS + 1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # Answered before the revocation began must pass; sent a cache lifetime after it ended must fail.
    # (A call's send time alone would not do for the first: a thread can stall between taking it and sending.)
    before = [s for _, answered, s in calls if answered < revoking]
    late = [s for sent, _, s in calls if sent >= revoked + KEY_CACHE_SECONDS]
    assert before and set(before) == {200}
    assert len(late) > 20 and set(late) == {401}, sorted(set(late))
