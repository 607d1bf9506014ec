"""Small builders shared by the HTTP tests."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.conftest import wait_for_model


def post_ok(client, path: str, body: Any, headers: dict[str, str], status: int = 200) -> Any:
    """POST and insist on the status; answer the JSON."""
    resp = client.post(path, json=body, headers=headers)
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json()


def get_ok(client, path: str, headers: dict[str, str], status: int = 200) -> Any:
    """GET and insist on the status; answer the JSON."""
    resp = client.get(path, headers=headers)
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json()


def two_tribes(client, headers: dict[str, str]) -> None:
    """Users `ua*` only touch items `a*`, users `ub*` only `b*`; popularity falls with the item number."""
    items = [{"item_id": f"{c}{i}", "title": f"{c}{i}", "category": c, "available": True} for c in "ab" for i in range(12)]
    post_ok(client, "/v1/items", {"items": items}, headers)
    events = []
    for c in "ab":
        for u in range(30):
            for i in range(12):
                if (u * 7 + i * 3) % 4 != 0 and i < 12 - (u % 5):  # everyone skips some items
                    events.append({"event_id": f"{c}-{u}-{i}", "user_id": f"u{c}{u}", "item_id": f"{c}{i}", "type": "view" if i % 3 else "click", "timestamp": "2026-11-01T10:00:00Z"})
    post_ok(client, "/v1/events", {"events": events}, headers)


def train(client, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start training through the API and wait for it to end."""
    started = post_ok(client, "/v1/models", body or {"params": {"factors": 8, "regularization": 0.1, "iterations": 10}}, headers, status=202)
    assert started["status"] == "training"
    return wait_for_model(client, headers, started["version"])


def iso(t: float | datetime) -> str:
    """A moment (epoch seconds or a datetime, naive read as UTC) as a client sends it: ISO 8601 UTC with microseconds."""
    moment = t if isinstance(t, datetime) else datetime.fromtimestamp(t, timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def before_first(statement_start: str, write: Callable[[], None]) -> Iterator[list[int]]:
    """Run `write` once, right before the first statement beginning `statement_start` (any case) runs
    on any engine: a deterministic interleaving of another request's writes with this one's statements."""
    done: list[int] = []
    wanted = statement_start.upper()

    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not done and statement.lstrip().upper().startswith(wanted):
            done.append(1)  # before the write, whose own statements pass through here too
            write()

    event.listen(Engine, "before_cursor_execute", hook)
    try:
        yield done
    finally:
        event.remove(Engine, "before_cursor_execute", hook)

