"""Users drifting away, and the retention curve of each arm, against counts made by hand."""
from __future__ import annotations

import base64
import csv
import io
import random
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest

from tests.experiment_helpers import ab_definition, assign, running
from tests.helpers import get_ok, iso, post_ok
from tests.server import gunicorn

DAY = 86_400.0


@pytest.fixture
def shoppers(client, auth):
    """60 users with seeded purchases and last visits; answer each user's (last_seen, purchases, revenue)."""
    rng = random.Random(5)
    now = datetime.now(timezone.utc)
    truth, events = {}, []
    for u in range(60):
        purchases = rng.choice([0, 1, 2, 2, 3])
        last_days_ago = rng.choice([1, 10, 31, 45, 90])
        revenue = 0.0
        for p in range(purchases):
            value = float(rng.choice([10, 20, 20, 35]))  # ties in revenue and purchases exercise the order
            revenue += value
            events.append({"event_id": f"p-{u}-{p}", "user_id": f"s{u:02d}", "item_id": "i1", "type": "purchase", "value": value, "timestamp": iso(now - timedelta(days=last_days_ago + 5 + p))})
        events.append({"event_id": f"v-{u}", "user_id": f"s{u:02d}", "item_id": "i2", "type": "view", "timestamp": iso(now - timedelta(days=last_days_ago))})
        truth[f"s{u:02d}"] = (last_days_ago, purchases, revenue)
    # Events arrive in two batches, and one of them again: counts must not double.
    post_ok(client, "/v1/events", {"events": events[: len(events) // 2]}, auth("storefront"))
    post_ok(client, "/v1/events", {"events": events}, auth("storefront"))
    return truth


def _server_env(config):
    return {"DATABASE_URL": config.database_url, "MODEL_DIR": str(config.model_dir), "LOG_LEVEL": "WARNING", "LOG_REQUESTS": "false"}


def _through_gunicorn(config, keys, paths):
    """The same requests answered by a real gunicorn with several workers, on the test database."""
    with gunicorn(_server_env(config), workers=3) as server:
        return [server.request("GET", path, key=keys["analyst"])[1] for path in paths]


def test_at_risk_order_and_pages_match_a_hand_count(client, auth, shoppers, config, keys):
    expected = sorted(
        ((u, p, r) for u, (days, p, r) in shoppers.items() if days >= 30 and p >= 2),
        key=lambda t: (-t[2], -t[1], t[0]),
    )
    seen, cursor, pages = [], None, 0
    while True:
        query = "/v1/users/at-risk?idle_days=30&min_purchases=2&limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = get_ok(client, query, auth("analyst"))
        seen += [(x["user_id"], x["purchases"], x["revenue"]) for x in page["users"]]
        assert all(x["idle_days"] >= 30 for x in page["users"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and pages == -(-len(expected) // 4)
    # Every worker of a real server walks the same pages (their cursors come from any worker).
    walked, cursor = [], None
    with gunicorn(_server_env(config), workers=3) as server:
        while True:
            path = "/v1/users/at-risk?idle_days=30&min_purchases=2&limit=4" + (f"&cursor={cursor}" if cursor else "")
            page = server.request("GET", path, key=keys["analyst"])[1]
            walked += [(x["user_id"], x["purchases"], x["revenue"]) for x in page["users"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert walked == expected
    resp = client.get("/v1/users/at-risk.csv?idle_days=30&min_purchases=2&limit=1000", headers=auth("editor"))
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [(r["user_id"], int(r["purchases"]), float(r["revenue"])) for r in rows] == expected
    assert "X-Next-Cursor" not in resp.headers
    assert client.get("/v1/users/at-risk?cursor=garbage", headers=auth("analyst")).status_code == 422
    assert client.get("/v1/users/at-risk", headers=auth("storefront")).status_code == 403


def test_pages_continue_past_users_with_the_longest_non_ascii_ids(client, auth):
    # Each id is 128 characters of four UTF-8 bytes; their cursors must still fit the 1,024 allowed.
    names = ["\U0001D518" * 128, "\u00e9" * 128, "\x01" * 128, '"\\\n' * 42, "z" * 128]  # JSON writes each \x01 as six characters
    events = [{"event_id": f"long-{k}", "user_id": name, "item_id": "i1", "type": "purchase", "value": 100.0 - k,
               "timestamp": "2024-01-01T00:00:00Z"} for k, name in enumerate(names)]
    post_ok(client, "/v1/events", {"events": events}, auth("storefront"))
    walked, cursor = [], None
    while True:
        page = get_ok(client, "/v1/users/at-risk?idle_days=0&min_purchases=1&limit=1" + (f"&cursor={cursor}" if cursor else ""), auth("analyst"))
        walked += [u["user_id"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(cursor) <= 1024
    assert walked == names


@pytest.mark.parametrize("position", [
    '[1, 99999999999999999999999, "u1"]', '[1, -9223372036854775809, "u1"]', '[1, -1, "u1"]', '[1, true, "u1"]',
    '[NaN, 1, "u1"]', '[-Infinity, 1, "u1"]', '[1e999, 1, "u1"]', '[1, 1, "\\ud800"]', '[1, 1, "u\\u0000"]', '[1, 1, "' + "u" * 129 + '"]', '[1, 1]', '{"a": 1}',
])
def test_a_tampered_cursor_is_a_422_not_a_500(client, auth, position):
    cursor = base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")
    resp = client.get(f"/v1/users/at-risk?idle_days=0&limit=2&cursor={cursor}", headers=auth("analyst"))
    assert resp.status_code == 422 and resp.get_json()["error"]["code"], resp.get_data(as_text=True)


def test_retention_curve_matches_a_hand_count(client, auth, config, keys):
    running(client, auth("editor"), ab_definition())
    shop = auth("storefront")
    now = datetime.now(timezone.utc)
    rng = random.Random(9)
    exposed, events = {}, []
    for u in range(120):
        user = f"r{u}"
        at = now - timedelta(days=rng.uniform(0.5, 12))
        arm = assign(client, shop, "points-q4", user, timestamp=iso(at))["arm"]
        exposed[user] = (arm, at.timestamp())
        for e in range(rng.randint(0, 6)):
            ts = at + timedelta(days=rng.uniform(0, 14))
            if ts < now:
                events.append({"event_id": f"r-{u}-{e}", "user_id": user, "item_id": "i1", "type": "view", "timestamp": iso(ts)})
    post_ok(client, "/v1/events", {"events": events}, shop)
    body = get_ok(client, "/v1/experiments/points-q4/results/retention?days=7", auth("analyst"))
    clock = now.timestamp()
    (served,) = _through_gunicorn(config, keys, ["/v1/experiments/points-q4/results/retention?days=7"])
    assert [a["days"] for a in served["arms"]] == [a["days"] for a in body["arms"]]
    by_user: dict[str, list[float]] = {}
    for e in events:
        by_user.setdefault(e["user_id"], []).append(datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp())
    for arm in body["arms"]:
        assert [d["day"] for d in arm["days"]] == list(range(1, 8))
        for day in arm["days"]:
            k = day["day"]
            eligible = [u for u, (a, t) in exposed.items() if a == arm["arm"] and t + (k + 1) * DAY <= clock]
            active = [u for u in eligible if any(exposed[u][1] + k * DAY <= ts < exposed[u][1] + (k + 1) * DAY for ts in by_user.get(u, []))]
            assert (day["eligible"], day["active"]) == (len(eligible), len(active)), (arm["arm"], k)
            if eligible:
                assert day["rate"] == pytest.approx(len(active) / len(eligible))
                assert 0 <= day["ci"][0] <= day["rate"] <= day["ci"][1] <= 1
            else:
                assert day["rate"] is None and day["ci"] is None


def test_a_user_id_that_reads_as_a_formula_stays_text_in_the_csv(client, auth):
    names = ['=HYPERLINK("http://example.com","x")', "+1", "-cmd", "@SUM(A1)", "'=1", "plain"]
    events = [{"event_id": f"f-{k}", "user_id": name, "item_id": "i1", "type": "purchase", "value": 10.0 + k,
               "timestamp": "2024-01-01T00:00:00Z"} for k, name in enumerate(names)]
    post_ok(client, "/v1/events", {"events": events}, auth("storefront"))
    resp = client.get("/v1/users/at-risk.csv?idle_days=0&min_purchases=1&limit=100", headers=auth("analyst"))
    rows = {r["revenue"]: r["user_id"] for r in csv.DictReader(io.StringIO(resp.get_data(as_text=True)))}
    assert [rows[repr(10.0 + k)] for k in range(len(names))] == ["'" + n for n in names[:5]] + ["plain"]
    # Reversible: one leading quote stripped gives every id back, "=1" and "'=1" apart.
    assert sorted(v[1:] if v.startswith("'") else v for v in rows.values()) == sorted(names)
    # The JSON answer keeps the ids as they are.
    page = get_ok(client, "/v1/users/at-risk?idle_days=0&min_purchases=1&limit=100", auth("analyst"))
    assert {u["user_id"] for u in page["users"]} == set(names)
    # A spreadsheet that splits fields on ';' must not make a cell of what follows one inside an id: every field is quoted.
    post_ok(client, "/v1/events", {"events": [{"event_id": "semi", "user_id": "zz;=cmd|'/C calc'!A0;", "item_id": "i1", "type": "purchase",
                                               "value": 99.0, "timestamp": "2024-01-01T00:00:00Z"}]}, auth("storefront"))
    text = client.get("/v1/users/at-risk.csv?idle_days=0&min_purchases=1&limit=100", headers=auth("analyst")).get_data(as_text=True)
    cells = [cell for row in csv.reader(io.StringIO(text, newline=""), delimiter=";") for cell in row]
    assert "zz;=cmd|'/C calc'!A0;" in text and not any(cell.startswith(("=", "+", "@")) for cell in cells), cells


def test_an_id_holding_a_line_break_stays_one_field_of_the_csv(client, auth):
    """Ids may hold any character but NUL: a carriage return left unquoted split the row in two for any CSV reader."""
    names = ["mid\rcr", "mid\nlf", "crlf\r\n", "x\r\ry", "plain"]
    events = [{"event_id": f"b-{k}", "user_id": name, "item_id": "i1", "type": "purchase", "value": 10.0 + k,
               "timestamp": "2024-01-01T00:00:00Z"} for k, name in enumerate(names)]
    post_ok(client, "/v1/events", {"events": events}, auth("storefront"))
    text = client.get("/v1/users/at-risk.csv?idle_days=0&min_purchases=1&limit=100", headers=auth("analyst")).get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["user_id", "last_seen", "idle_days", "purchases", "revenue"] and all(len(row) == 5 for row in rows)
    assert sorted(row[0] for row in rows[1:]) == sorted(names)


def test_an_event_dated_years_ahead_counts_as_seen_when_it_arrived(client, auth):
    now = datetime.now(timezone.utc)
    events = [
        {"event_id": "old-buy", "user_id": "ahead", "item_id": "i1", "type": "purchase", "value": 500.0, "timestamp": iso(now - timedelta(days=40))},
        {"event_id": "far-view", "user_id": "ahead", "item_id": "i1", "type": "view", "timestamp": iso(now + timedelta(days=365 * 99))},
    ]
    post_ok(client, "/v1/events", {"events": events}, auth("storefront"))
    today = get_ok(client, "/v1/users/at-risk?idle_days=0", auth("analyst"))["users"]
    row = next(u for u in today if u["user_id"] == "ahead")
    seen = datetime.fromisoformat(row["last_seen"].replace("Z", "+00:00"))
    assert now - timedelta(minutes=5) <= seen <= datetime.now(timezone.utc) and 0 <= row["idle_days"] < 0.01
    # Not idle for a day yet: the far date did not move it past today either.
    assert all(u["user_id"] != "ahead" for u in get_ok(client, "/v1/users/at-risk?idle_days=1", auth("analyst"))["users"])


def test_a_return_nets_off_revenue_and_is_no_purchase_on_the_at_risk_list(client, auth):
    then = datetime.now(timezone.utc) - timedelta(days=40)
    events = [
        {"event_id": "b1", "user_id": "buyer", "item_id": "i1", "type": "purchase", "value": 30.0, "timestamp": iso(then)},
        {"event_id": "b2", "user_id": "buyer", "item_id": "i1", "type": "purchase", "value": -10.0, "timestamp": iso(then + timedelta(hours=1))},
        {"event_id": "r1", "user_id": "returner", "item_id": "i1", "type": "purchase", "value": -5.0, "timestamp": iso(then)},
    ]
    post_ok(client, "/v1/events", {"events": events}, auth("storefront"))
    listed = {u["user_id"]: u for u in get_ok(client, "/v1/users/at-risk?idle_days=30&min_purchases=0", auth("analyst"))["users"]}
    assert (listed["buyer"]["purchases"], listed["buyer"]["revenue"]) == (1, 20.0)
    assert (listed["returner"]["purchases"], listed["returner"]["revenue"]) == (0, -5.0)
    assert "returner" not in {u["user_id"] for u in get_ok(client, "/v1/users/at-risk?idle_days=30&min_purchases=1", auth("analyst"))["users"]}


def test_revenue_is_the_exact_sum_of_purchases_however_they_were_batched(client, auth):
    # Plain float addition had turned 0.01, 1e12 and -1e12 into 0.010009765625, in one batch or in three.
    then = datetime.now(timezone.utc) - timedelta(days=40)
    batchings = {
        "one-batch": [[0.01, 1e12, -1e12, 0.12345678901234568, 3e-17, 1e12, -1e12]],
        "batch-each": [[v] for v in (0.01, 1e12, -1e12, 0.12345678901234568, 3e-17, 1e12, -1e12)],
        "cancelled-later": [[1e12, 0.01], [-1e12]],
        "tenths": [[0.1, 0.2], [1e12, -1e12]],
    }
    shop = auth("storefront")
    for user, batches in batchings.items():
        for b, values in enumerate(batches):
            events = [{"event_id": f"{user}-{b}-{k}", "user_id": user, "item_id": "i1", "type": "purchase", "value": v,
                       "timestamp": iso(then + timedelta(seconds=k))} for k, v in enumerate(values)]
            post_ok(client, "/v1/events", {"events": events}, shop)
    listed = {u["user_id"]: u["revenue"] for u in get_ok(client, "/v1/users/at-risk?idle_days=30&min_purchases=0", auth("analyst"))["users"]}
    for user, batches in batchings.items():  # the exact sum of the doubles, rounded once
        assert listed[user] == float(sum(Fraction(v) for values in batches for v in values)), user
    assert (listed["cancelled-later"], listed["tenths"]) == (0.01, 0.30000000000000004)
