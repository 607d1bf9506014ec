"""The console at /ui through the test client: sign-in, CSRF, roles, forms and their errors, escaping, the CSV."""
from __future__ import annotations

import csv as csv_module
import html as html_module
import io
import re
import time
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from tests.experiment_helpers import ab_definition, assign, bandit_definition, no_conversions_in_every5, running
from service.usecases import results
from tests.helpers import get_ok, iso, post_ok, train, two_tribes

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client: FlaskClient, path: str = "/ui/sign-in") -> str:
    """The session's CSRF token, read from a page's form."""
    page = client.get(path)
    found = CSRF.search(page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)[:500]
    return found.group(1)


def sign_in(client: FlaskClient, key: str) -> None:
    """Sign in through the form."""
    resp = client.post("/ui/sign-in", data={"csrf_token": csrf(client), "api_key": key})
    assert resp.status_code == 303, resp.get_data(as_text=True)


@pytest.fixture
def as_role(client: FlaskClient, keys: dict[str, str]) -> Any:
    """Sign the client in with a role's key."""

    def use(role: str) -> FlaskClient:
        sign_in(client, keys[role])
        return client

    return use


def form_of(**fields: str) -> dict[str, str]:
    """A new-experiment form: two arms over reward schedules, then the fields given."""
    base = {
        "key": "console-ab", "name": "Console A/B", "type": "ab", "traffic": "1",
        "arms.0.key": "control", "arms.0.weight": "1", "arms.0.schedule.type": "per_unit", "arms.0.schedule.per_unit.points_per_unit": "1",
        "arms.1.key": "every-3rd", "arms.1.weight": "1", "arms.1.schedule.type": "fixed_ratio",
        "arms.1.schedule.fixed_ratio.every": "3", "arms.1.schedule.fixed_ratio.points": "50",
        "arms.2.key": "", "arms.2.weight": "1", "arms.2.schedule.type": "",
        "metrics.0.key": "conversion", "metrics.0.kind": "binary",
    }
    return {**base, **fields}


def test_pages_need_a_signed_in_key(client):
    resp = client.get("/ui/experiments")
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/ui/sign-in?next=/ui/experiments")
    assert client.get("/ui/").headers["Location"] == "/ui/sign-in"


def test_sign_in_refuses_an_unknown_key_and_keeps_the_cookie_safe(client, keys):
    token = csrf(client)
    bad = client.post("/ui/sign-in", data={"csrf_token": token, "api_key": "sl_nope"})
    assert bad.status_code == 401 and "unknown or has been revoked" in bad.get_data(as_text=True)
    good = client.post("/ui/sign-in", data={"csrf_token": token, "api_key": keys["analyst"]})
    cookie = good.headers["Set-Cookie"]
    assert good.status_code == 303 and good.headers["Location"] == "/ui/experiments"
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie and "Secure" not in cookie


@pytest.mark.parametrize("pasted", ["export EDITOR_KEY={key}", "  EDITOR_KEY={key}\n", "Authorization: Bearer {key}", "bearer {key}", "'{key}'"])
def test_sign_in_takes_the_key_out_of_a_pasted_shell_line_or_header(client, keys, pasted):
    # make run prints `export EDITOR_KEY=sl_...`; pasting that whole line had read "unknown or revoked".
    signed_in = client.post("/ui/sign-in", data={"csrf_token": csrf(client), "api_key": pasted.format(key=keys["editor"])})
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/ui/experiments"


def test_a_console_session_does_not_reach_the_api(client, keys):
    # The session is opened for /ui only: a signed-in browser's cookie grants nothing outside it.
    token = csrf(client)
    assert client.post("/ui/sign-in", data={"csrf_token": token, "api_key": keys["admin"]}).status_code == 303
    client.set_cookie("stickyloop_console", client.get_cookie("stickyloop_console", path="/ui").value, path="/")
    answer = client.get("/v1/keys")
    assert answer.status_code == 401 and "Set-Cookie" not in answer.headers
    assert client.get("/ui/experiments").status_code == 200


def test_sign_in_needs_the_csrf_token_and_follows_only_local_next(client, keys):
    assert client.post("/ui/sign-in", data={"api_key": keys["editor"]}).status_code == 403
    token = csrf(client)
    evil = client.post("/ui/sign-in", data={"csrf_token": token, "api_key": keys["editor"], "next": "//evil.example/ui"})
    assert evil.headers["Location"] == "/ui/experiments"
    token = csrf(client)
    local = client.post("/ui/sign-in", data={"csrf_token": token, "api_key": keys["editor"], "next": "/ui/models"})
    assert local.headers["Location"] == "/ui/models"
    # A path that leaves the console once a browser resolves its dot segments, or one that only starts like it, is dropped too.
    for outside in ("/ui/../v1/keys", "/ui/%2e%2e/v1/keys", "/ui/..%2fv1", "/uiother", "/ui/./x/../../v1", "/ui/..#x", "/ui/%2e%2e#"):
        token = csrf(client)
        answer = client.post("/ui/sign-in", data={"csrf_token": token, "api_key": keys["editor"], "next": outside})
        assert answer.headers["Location"] == "/ui/experiments", outside


def test_only_a_long_form_comes_back_through_the_sign_in_page(client, auth, keys):
    """Kept fields bring back a long form; posted with a page that acts (stop), the sign-in goes on as usual, and
    a hand-made `resumed` post to such a page is refused, so that a sign-in can never carry an action out."""
    running(client, auth("editor"), ab_definition())
    token = csrf(client)
    signed = client.post("/ui/sign-in", data={"csrf_token": token, "api_key": keys["editor"], "next": "/ui/experiments/points-q4/stop", "kept:confirm": "yes"})
    assert signed.status_code == 303 and signed.headers["Location"] == "/ui/experiments/points-q4/stop"
    stop = client.post("/ui/experiments/points-q4/stop", data={"csrf_token": csrf(client, "/ui/experiments"), "confirm": "yes", "resumed": "yes"},
                       headers={"Origin": "http://localhost"})
    assert stop.status_code == 400
    assert client.get("/v1/experiments/points-q4", headers=auth("editor")).get_json()["status"] == "running"


def test_roles_as_in_the_api(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    analyst = as_role("analyst")
    assert analyst.get("/ui/experiments").status_code == 200
    assert analyst.get("/ui/experiments/points-q4/results").status_code == 200
    listing = analyst.get("/ui/experiments").get_data(as_text=True)
    assert "New experiment" not in listing and "Models" not in listing
    for path in ("/ui/new-experiment", "/ui/experiments/points-q4/stop", "/ui/models"):
        resp = analyst.get(path)
        assert resp.status_code == 403, path
        assert "analyst key cannot use this page" in resp.get_data(as_text=True)
        assert "Sign out" in resp.get_data(as_text=True) and ">Sign in<" not in resp.get_data(as_text=True)  # still signed in
    # A hand-made POST with a valid token but the wrong role, and one with the right role but no token.
    token = csrf(analyst, "/ui/experiments")
    assert analyst.post("/ui/experiments/points-q4/stop", data={"csrf_token": token, "confirm": "yes"}).status_code == 403
    editor = as_role("editor")
    assert editor.post("/ui/experiments/points-q4/stop", data={"confirm": "yes"}).status_code == 403
    # Results are the analyst's, as in the API: an editor is offered no link to them and is refused them.
    assert "/results" not in editor.get("/ui/experiments").get_data(as_text=True) + editor.get("/ui/experiments/points-q4").get_data(as_text=True)
    assert "Results are read with an analyst key" in editor.get("/ui/experiments/points-q4").get_data(as_text=True)
    for path in ("/ui/experiments/points-q4/results", "/ui/experiments/points-q4/results.csv", "/ui/experiments/points-q4/what-if"):
        assert editor.get(path).status_code == 403, path
    assert client.get("/v1/experiments/points-q4", headers=auth("analyst")).get_json()["status"] == "running"


def test_storefront_key_reaches_only_the_api_reference(as_role):
    storefront = as_role("storefront")
    assert storefront.get("/ui/").headers["Location"] == "/ui/docs"
    assert storefront.get("/ui/experiments").status_code == 403
    page = storefront.get("/ui/docs").get_data(as_text=True)
    # Nothing loads from another host (a CDN): every script and stylesheet is served from this one. (The
    # page's random CSRF token had once spelt "cdn".)
    assert "vendor/swagger-ui/swagger-ui-bundle.js" in page and not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', page)


def test_create_start_and_list_through_the_forms(as_role, client, auth):
    editor = as_role("editor")
    token = csrf(editor, "/ui/new-experiment")
    created = editor.post("/ui/new-experiment", data={**form_of(), "csrf_token": token})
    assert created.status_code == 303 and created.headers["Location"] == "/ui/experiments/console-ab#top"  # the top: not a field the form page linked to
    stored = client.get("/v1/experiments/console-ab", headers=auth("analyst")).get_json()
    assert stored["status"] == "draft"
    assert [a["schedule"] for a in stored["arms"]] == [
        {"type": "per_unit", "points_per_unit": 1},
        {"type": "fixed_ratio", "every": 3, "points": 50},
    ]
    unconfirmed = editor.post("/ui/experiments/console-ab/start", data={"csrf_token": token})
    assert unconfirmed.status_code == 422 and "Tick the box" in unconfirmed.get_data(as_text=True)
    assert editor.post("/ui/experiments/console-ab/start", data={"csrf_token": token, "confirm": "yes"}).status_code == 303
    listing = editor.get("/ui/experiments").get_data(as_text=True)
    assert "console-ab" in listing and "running" in listing
    again = editor.post("/ui/experiments/console-ab/start", data={"csrf_token": token, "confirm": "yes"})
    assert again.status_code == 409
    # A move it cannot make is refused on the page itself, with no box to tick.
    offered = editor.get("/ui/experiments/console-ab/start")
    html = offered.get_data(as_text=True)
    assert offered.status_code == 409 and "It is <strong>running</strong>; start needs it draft or paused." in html and 'name="confirm"' not in html
    assert 'name="confirm"' in editor.get("/ui/experiments/console-ab/pause").get_data(as_text=True)
    assert editor.get("/ui/experiments/console-ab/edit").status_code == 409


def test_a_long_form_posted_with_an_old_token_comes_back_filled_in_not_lost(as_role, client, auth, keys):
    editor = as_role("editor")
    old = csrf(editor, "/ui/new-experiment")
    sign_in(editor, keys["editor"])  # signed in again (another tab): the session, and its token, are new
    typed = {**form_of(name="Typed with care"), "csrf_token": old}
    own = {"Origin": "http://localhost"}
    back = editor.post("/ui/new-experiment", data=typed, headers=own)
    html = back.get_data(as_text=True)
    assert back.status_code == 409 and "Nothing was saved" in html and 'value="Typed with care"' in html
    assert CSRF.search(html).group(1) == csrf(editor, "/ui/new-experiment") != old  # a fresh token, ready to save
    assert client.get("/v1/experiments/console-ab", headers=auth("analyst")).status_code == 404
    trained = editor.post("/ui/models/new", data={"csrf_token": old, "algorithm": "item_knn", "params": '{"neighbours": 5}'}, headers={"Referer": "http://localhost/ui/models/new"})
    assert trained.status_code == 409 and "{&#34;neighbours&#34;: 5}" in trained.get_data(as_text=True)
    # From anywhere else, or saying nothing of where it came from, an old token is refused as always.
    for headers in ({"Origin": "https://evil.example"}, {}):
        assert editor.post("/ui/new-experiment", data=typed, headers=headers).status_code == 403
    assert editor.post("/ui/experiments/console-ab/start", data={"csrf_token": old, "confirm": "yes"}, headers=own).status_code == 403


HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def _hidden(page_html: str) -> list[tuple[str, str]]:
    """A page's hidden inputs, their values unescaped as a browser posts them."""
    return [(name, html_module.unescape(value)) for name, value in HIDDEN.findall(page_html)]


def _kept_through_sign_in(client: FlaskClient, page: Any, key: str, status: int) -> str:
    """Sign in from the page a long form's post led to, then follow the one button back: the form's HTML."""
    html = page.get_data(as_text=True)
    assert page.status_code == status and "The form is kept, not saved" in html, html[:2000]
    fields = _hidden(html)
    signed = client.post("/ui/sign-in", data=MultiDict([*fields, ("api_key", key)]))
    resume = signed.get_data(as_text=True)
    assert signed.status_code == 200 and "Back to the form" in resume, resume[:2000]
    action = re.search(r'<form method="post" action="([^"]+)"', resume.split("<main", 1)[1]).group(1)
    fields = _hidden(resume)
    back = client.post(action, data=MultiDict(fields), headers={"Origin": "http://localhost"})
    assert back.status_code == 200, back.get_data(as_text=True)[:2000]
    return back.get_data(as_text=True)


def test_reloading_the_page_a_sign_in_answered_shows_that_page_again(as_role, client, keys):
    """A reload repeats the sign-in's post, with the token that sign-in replaced: the same page comes back (the
    kept form's way back, or the redirect onwards) instead of a 403. Another key typed on an out-of-date sign-in
    page, or the same post from anywhere else, is refused as before."""
    own = {"Origin": "http://localhost"}
    editor = as_role("editor")
    token = csrf(editor, "/ui/new-experiment")
    typed = {**form_of(name="Typed & kept"), "csrf_token": token}
    editor.post("/ui/sign-out", data={"csrf_token": token}, headers=own)
    kept = _hidden(editor.post("/ui/new-experiment", data=typed, headers=own).get_data(as_text=True))
    first = editor.post("/ui/sign-in", data=MultiDict([*kept, ("api_key", keys["editor"])]), headers=own)
    reloaded = editor.post("/ui/sign-in", data=MultiDict([*kept, ("api_key", keys["editor"])]), headers=own)
    html = reloaded.get_data(as_text=True)
    assert first.status_code == reloaded.status_code == 200 and "Back to the form" in html, html[:2000]
    assert _hidden(html) == _hidden(first.get_data(as_text=True)) and ("csrf_token", csrf(editor, "/ui/new-experiment")) in _hidden(html)
    back = editor.post("/ui/new-experiment", data=MultiDict(_hidden(html)), headers=own)
    assert back.status_code == 200 and 'value="Typed &amp; kept"' in back.get_data(as_text=True)
    for headers in ({}, {"Origin": "https://evil.example"}):
        assert editor.post("/ui/sign-in", data=MultiDict([*kept, ("api_key", keys["editor"])]), headers=headers).status_code == 403
    switched = editor.post("/ui/sign-in", data=MultiDict([*kept, ("api_key", keys["analyst"])]), headers=own)
    assert switched.status_code == 403 and "<strong>editor</strong>" in editor.get("/ui/experiments").get_data(as_text=True)
    # With no session left (signed out, here in this tab), the same post signs nobody in.
    editor.post("/ui/sign-out", data={"csrf_token": csrf(editor, "/ui/experiments")}, headers=own)
    assert editor.post("/ui/sign-in", data=MultiDict([*kept, ("api_key", keys["editor"])]), headers=own).status_code == 403
    assert editor.get("/ui/experiments").status_code == 303
    # A sign-in without a kept form, reloaded, leads where it led.
    plain = {"csrf_token": csrf(client), "api_key": keys["analyst"], "next": "/ui/models"}
    assert client.post("/ui/sign-in", data=plain, headers=own).headers["Location"] == "/ui/models"
    assert client.post("/ui/sign-in", data=plain, headers=own).headers["Location"] == "/ui/models"


def test_a_long_form_keeps_its_typing_through_a_session_that_ended_or_changed_role(as_role, client, auth, keys):
    """Signed out in another tab, or signed in there with a key of another role: the form goes through the sign-in
    page and comes back as typed, saving nothing until it is saved again."""
    own = {"Origin": "http://localhost"}
    editor = as_role("editor")
    token = csrf(editor, "/ui/new-experiment")
    typed = {**form_of(name="Typed & kept", description='say "hi"'), "csrf_token": token}
    editor.post("/ui/sign-out", data={"csrf_token": token}, headers=own)  # the other tab
    html = _kept_through_sign_in(client, editor.post("/ui/new-experiment", data=typed, headers=own), keys["editor"], 401)
    assert "Nothing is saved yet: you signed in again" in html and 'value="Typed &amp; kept"' in html and "say &#34;hi&#34;" in html
    assert client.get("/v1/experiments/console-ab", headers=auth("analyst")).status_code == 404
    saved = editor.post("/ui/new-experiment", data={**typed, "csrf_token": CSRF.search(html).group(1)}, headers=own)
    assert saved.status_code == 303 and client.get("/v1/experiments/console-ab", headers=auth("analyst")).get_json()["name"] == "Typed & kept"
    # An analyst's sign-in in another tab: the editor's next form is kept too, and a wrong key keeps it still.
    token = csrf(editor, "/ui/models/new")
    sign_in(editor, keys["analyst"])
    page = editor.post("/ui/models/new", data={"csrf_token": token, "algorithm": "item_knn", "params": '{"neighbours": 5}'}, headers=own)
    assert "but the console is now signed in with an analyst key (perhaps in another tab)" in page.get_data(as_text=True)
    wrong = client.post("/ui/sign-in", data=MultiDict([*HIDDEN.findall(page.get_data(as_text=True)), ("api_key", "sl_nope")]))
    assert wrong.status_code == 401 and 'name="kept:algorithm" value="item_knn"' in wrong.get_data(as_text=True)
    html = _kept_through_sign_in(client, page, keys["editor"], 403)
    assert "Nothing is saved yet" in html and "{&#34;neighbours&#34;: 5}" in html
    # Sign out from a tab whose session had already ended: to sign-in, with no form to keep and nowhere to return.
    gone = editor.post("/ui/sign-out", data={"csrf_token": CSRF.search(html).group(1)}, headers=own)
    assert gone.status_code == 303 and editor.post("/ui/sign-out", data={"csrf_token": "old"}, headers=own).headers["Location"] == "/ui/sign-in"
    sign_in(editor, keys["editor"])
    # Posted from elsewhere without a session, a form is not brought back: sign-in as before.
    editor.post("/ui/sign-out", data={"csrf_token": CSRF.search(html).group(1)}, headers=own)
    elsewhere = editor.post("/ui/new-experiment", data=typed, headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code in (303, 403) and "kept:" not in elsewhere.get_data(as_text=True)


def test_validation_errors_sit_beside_the_fields_they_name(as_role):
    editor = as_role("editor")
    token = csrf(editor, "/ui/new-experiment")
    bad = form_of(**{"arms.1.schedule.fixed_ratio.every": "0", "arms.1.payload": "{not json", "traffic": "2"})
    resp = editor.post("/ui/new-experiment", data={**bad, "csrf_token": token})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    every = re.search(r'<p class="error" id="f-arms-1-schedule-fixed_ratio-every-error">(.*?)</p>', html)
    assert every and "greater than or equal to 1" in every.group(1)
    assert 'id="f-arms-1-payload-error"' in html and "not valid JSON" in html
    assert 'id="f-traffic-error"' in html
    # A double-points window's factor sits in the schedule's multiplier, whatever the schedule's type.
    window = {"arms.0.schedule.multiplier.factor": "-1", "arms.0.schedule.multiplier.start": "2026-12-01T00:00", "arms.0.schedule.multiplier.end": "2026-12-08T00:00"}
    html = editor.post("/ui/new-experiment", data={**form_of(**window), "csrf_token": token}).get_data(as_text=True)
    factor = re.search(r'<p class="error" id="f-arms-0-schedule-multiplier-factor-error">(.*?)</p>', html)
    assert factor and "greater than 0" in factor.group(1)
    # A window left half blank is said to be missing, not to need a time zone the picker cannot type.
    half = {**window, "arms.0.schedule.multiplier.factor": "2", "arms.0.schedule.multiplier.end": ""}
    html = editor.post("/ui/new-experiment", data={**form_of(**half), "csrf_token": token}).get_data(as_text=True)
    end = re.search(r'<p class="error" id="f-arms-0-schedule-multiplier-end-error">(.*?)</p>', html)
    assert end and "is required for a multiplier (when it ends, in UTC)" in end.group(1) and "ISO 8601" not in html
    # The domain's own check (a built-in metric declared with the wrong kind) lands on its field too.
    wrong_kind = form_of(**{"metrics.0.key": "revenue", "metrics.0.kind": "binary"})
    html = editor.post("/ui/new-experiment", data={**wrong_kind, "csrf_token": token}).get_data(as_text=True)
    assert 'id="f-metrics-0-kind-error"' in html or 'id="f-metrics-0-key-error"' in html
    # A fault deep inside the targeting rule is named in the message beside its text area, and the
    # summary links there: the rule has no input of its own per leaf.
    for rule, place in (('{"all": [{"attribute": "purchases", "op": "zzz", "value": 1}]}', "all.0"), ('{"any": "nope"}', "any")):
        html = editor.post("/ui/new-experiment", data={**form_of(targeting=rule), "csrf_token": token}).get_data(as_text=True)
        beside = re.search(r'<p class="error" id="f-targeting-error">(.*?)</p>', html)
        assert beside and place in beside.group(1) and 'href="#f-targeting"' in html, rule
        assert 'aria-invalid="true"' in html.split('id="f-targeting"', 1)[1].split(">", 1)[0]


def test_form_errors_read_in_the_forms_own_words(as_role, client, auth):
    editor = as_role("editor")
    token = csrf(editor, "/ui/new-experiment")
    html = editor.post("/ui/new-experiment", data={**form_of(**{"key": "Bad Key", "arms.1.schedule.fixed_ratio.every": ""}), "csrf_token": token}).get_data(as_text=True)
    assert "String should match pattern" not in html and "use lower-case letters, digits" in html
    assert ">Arm 2 › schedule › every</a>" in html  # the summary names fields as their labels read, counting from 1
    post_ok(client, "/v1/experiments", ab_definition(key="taken"), auth("editor"), status=201)
    taken = editor.post("/ui/new-experiment", data={**form_of(key="taken"), "csrf_token": token})
    assert taken.status_code == 409 and 'id="f-key-error"' in taken.get_data(as_text=True)  # beside the Key field
    more = editor.post("/ui/new-experiment", data={**form_of(), "more": "metric", "csrf_token": token}).get_data(as_text=True)
    assert re.search(r'<input id="f-metrics-1-key" name="metrics.1.key"[^>]* autofocus', more)  # the new row has the focus
    full = {f"arms.{i}.{field}": value for i in range(50) for field, value in (("key", f"a{i}"), ("weight", "1"), ("schedule.type", ""))}
    at_bound = editor.post("/ui/new-experiment", data={**form_of(**full), "more": "arm", "csrf_token": token}).get_data(as_text=True)
    assert "at most 50 arms" in at_bound and 'name="arms.49.key"' in at_bound and 'name="arms.50.key"' not in at_bound
    assert "Not saved" not in at_bound  # nothing was being saved: the form only asked for a row


@pytest.mark.parametrize("field, value", [
    ("traffic", "9" * 5000), ("arms.0.weight", "9" * 5000),
    ("targeting", "[" * 50_000), ("arms.0.payload", '{"a":' * 50_000), ("arms.0.payload", '{"a": 1e400}'), ("arms.0.payload", '{"a": NaN}'),
    # Not an object: the API refuses each, and the form had stored {} for them.
    ("arms.0.payload", "[]"), ("arms.0.payload", "0"), ("arms.0.payload", "false"), ("arms.0.payload", '""'), ("arms.0.payload", "null"),
])
def test_hostile_form_values_are_named_on_the_page_not_a_server_error(as_role, field, value):
    editor = as_role("editor")
    resp = editor.post("/ui/new-experiment", data={**form_of(**{field: value}), "csrf_token": csrf(editor, "/ui/new-experiment")})
    assert resp.status_code == 422 and f'id="f-{field.replace(".", "-")}-error"' in resp.get_data(as_text=True)


def test_a_hand_made_posts_errors_point_at_fields_the_form_draws(as_role, client, auth):
    # A schedule type the select does not offer was linked from the summary to "#f-arms-0-schedule",
    # which no element has; a year past 9999, which the date picker offers, was "not ISO 8601"; a row
    # past the 50 the form draws had its error only in the summary.
    editor = as_role("editor")
    odd = editor.post("/ui/new-experiment", data={**form_of(**{"arms.0.schedule.type": "0"}), "csrf_token": csrf(editor, "/ui/new-experiment")})
    html = odd.get_data(as_text=True)
    assert odd.status_code == 422 and 'href="#f-arms-0-schedule-type"' in html and 'id="f-arms-0-schedule-type"' in html
    far = {"arms.1.schedule.multiplier.factor": "2", "arms.1.schedule.multiplier.start": "2030-01-01T00:00", "arms.1.schedule.multiplier.end": "275760-09-13T00:00"}
    late = editor.post("/ui/new-experiment", data={**form_of(**far), "csrf_token": csrf(editor, "/ui/new-experiment")})
    assert late.status_code == 422 and 'id="f-arms-1-schedule-multiplier-end-error"' in late.get_data(as_text=True)
    assert "lies past the year 9999" in late.get_data(as_text=True) and "ISO 8601" not in late.get_data(as_text=True)
    beyond = editor.post("/ui/new-experiment", data={**form_of(**{"arms.99.key": "Bad", "metrics.77.key": "Bad"}), "csrf_token": csrf(editor, "/ui/new-experiment")})
    assert beyond.status_code == 303, beyond.get_data(as_text=True)[:2000]
    stored = get_ok(client, "/v1/experiments/console-ab", auth("editor"))
    assert [a["key"] for a in stored["arms"]] == ["control", "every-3rd"] and [m["key"] for m in stored["metrics"]] == ["conversion"]


def test_a_payload_or_targeting_nested_past_what_a_definition_allows_is_named_beside_its_box(as_role, client, auth):
    # Each box parses alone, so nesting one level short of the parser's bound passed it; the definition
    # as a whole, checked as the API checks a body, then went past it, and the page was a server error.
    editor = as_role("editor")
    nested = lambda depth: '{"a":' * depth + "1" + "}" * depth  # noqa: E731
    for field, depth in (("arms.1.payload", 198), ("arms.1.payload", 200), ("targeting", 200)):
        resp = editor.post("/ui/new-experiment", data={**form_of(**{field: nested(depth)}), "csrf_token": csrf(editor, "/ui/new-experiment")})
        html = resp.get_data(as_text=True)
        assert resp.status_code == 422 and f'id="f-{field.replace(".", "-")}-error"' in html, (field, depth)
        assert f"nests {depth} levels deep, too deep for the request it is part of" in html
    # Of two deep boxes, the one whose path goes deepest in the whole: a payload sits two levels lower than targeting.
    both = editor.post("/ui/new-experiment", data={**form_of(**{"arms.1.payload": nested(199), "targeting": nested(199)}),
                                                   "csrf_token": csrf(editor, "/ui/new-experiment")}).get_data(as_text=True)
    assert 'id="f-arms-1-payload-error"' in both and 'id="f-targeting-error"' not in both
    assert client.get("/v1/experiments/console-ab", headers=auth("editor")).status_code == 404
    # One level less is a definition the API takes as well, and it saves.
    saved = editor.post("/ui/new-experiment", data={**form_of(**{"arms.1.payload": nested(197)}), "csrf_token": csrf(editor, "/ui/new-experiment")})
    assert saved.status_code == 303, saved.get_data(as_text=True)[:2000]


@pytest.mark.parametrize("params", ["[" * 50_000, '{"factors": ' + "9" * 5000 + "}", '{"factors": NaN}'])
def test_hostile_model_parameters_are_named_on_the_page(as_role, params):
    editor = as_role("editor")
    resp = editor.post("/ui/models/new", data={"csrf_token": csrf(editor, "/ui/models/new"), "algorithm": "als", "params": params})
    assert resp.status_code == 422 and 'id="f-params-error"' in resp.get_data(as_text=True)


def test_model_parameters_nested_past_what_a_request_allows_are_named_with_their_depth(as_role):
    # The box parses alone, so its text passed at a depth the whole request then went past: the page
    # had shown the parser's "body: Invalid JSON: recursion limit exceeded at line 1 column 1232".
    editor = as_role("editor")
    params = '{"a":' * 200 + "1" + "}" * 200
    resp = editor.post("/ui/models/new", data={"csrf_token": csrf(editor, "/ui/models/new"), "algorithm": "als", "params": params})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="f-params-error"' in html and "nests 200 levels deep, too deep for the request" in html
    assert "line 1 column" not in html


def test_a_tuned_run_starts_from_the_training_form_and_its_bad_settings_are_named(as_role, client, auth):
    from recommender.models import ALGORITHMS
    from tests.helpers import two_tribes, wait_for_model

    editor, headers = as_role("editor"), auth("editor")
    form = editor.get("/ui/models/new").get_data(as_text=True)
    for cls in ALGORITHMS.values():  # each algorithm's default ranges, as its model class declares them
        assert all(f"<code>{p}</code>" in form for p in cls.SEARCH_SPACE)
    token = csrf(editor, "/ui/models/new")
    sent = {"csrf_token": token, "algorithm": "item_knn", "params": "", "tune": "yes", "tune.trials": "2", "tune.metric": "precision_at_10", "tune.seed": "7",
            "tune.space": '{"neighbours": [5, 50]}'}
    for name, value, shown_under in [
        ("tune.trials", "0", "tune.trials"), ("tune.trials", "2.5", "tune.trials"), ("tune.trials", "\u0663", "tune.trials"),
        ("tune.metric", "recall", "tune.metric"), ("tune.seed", "-1", "tune.seed"),
        ("tune.space", "{neighbours: [5, 50]}", "tune.space"), ("tune.space", '{"factors": [8, 16]}', "tune.space"), ("tune.space", '{"neighbours": [0, 50]}', "tune.space"),
        ("params", '{"neighbours": 5}', "tune.space"),  # fixed and searched at once
    ]:
        refused = editor.post("/ui/models/new", data={**sent, name: value})
        html = refused.get_data(as_text=True)
        assert refused.status_code == 422 and f'id="f-{shown_under.replace(".", "-")}-error"' in html, (name, value)
        assert 'name="tune" value="yes" aria-describedby="tune-hint" checked' in html  # what was typed stays
    assert '<option value="recall" selected>' in editor.post("/ui/models/new", data={**sent, "tune.metric": "recall"}).get_data(as_text=True)
    both = editor.post("/ui/models/new", data={**sent, "params": "{", "tune.space": "[", "tune.trials": "1_0"}).get_data(as_text=True)
    assert 'id="f-params-error"' in both and 'id="f-tune-space-error"' in both  # every bad JSON text at once
    assert 'id="f-tune-trials-error"' in both  # and the other fields' problems beside them
    assert 'id="f-tune-trials-error"' in editor.post("/ui/models/new", data={**sent, "tune.trials": "1_0"}).get_data(as_text=True)
    assert get_ok(client, "/v1/models", headers)["models"] == []
    two_tribes(client, auth("storefront"))
    assert editor.post("/ui/models/new", data={**sent, "tune": "on"}).status_code == 303  # any value ticks the box, as browsers send "on"
    assert "searching 2 parameter sets first" in editor.get("/ui/models").get_data(as_text=True)
    version = get_ok(client, "/v1/models", headers)["models"][0]["version"]
    tuned = wait_for_model(client, headers, version)
    assert tuned["status"] == "ready" and tuned["tune"] == {"trials": 2, "metric": "precision_at_10", "space": {"neighbours": [5, 50]}, "seed": 7}
    assert len(tuned["tuning"]) == 2 and 5 <= tuned["params"]["neighbours"] <= 50
    # Unticked, the tuning fields are ignored: a plain run.
    assert editor.post("/ui/models/new", data={**sent, "tune": "", "tune.trials": "0"}).status_code == 303
    plain = wait_for_model(client, headers, get_ok(client, "/v1/models", headers)["models"][0]["version"])
    assert plain["status"] == "ready" and plain["tune"] is None


def test_schedule_types_and_fields_come_from_the_registry(as_role):
    from experiments.schedules import SCHEDULES

    html = as_role("editor").get("/ui/new-experiment").get_data(as_text=True)
    for kind, cls in SCHEDULES.items():
        assert f'<option value="{kind}"' in html
        for f in cls.parameters():
            assert f'name="arms.0.schedule.{kind}.{f.name}"' in html
    css = as_role("editor").get("/ui/schedule-fields.css").get_data(as_text=True)
    assert all(f".params-{kind}" in css for kind in SCHEDULES)
    # Each type's inputs are a group named by its type, so a label reads as the parameter alone ("Every", not
    # "every (fixed ratio)"), and bounds read in digits: "at most 1,000,000,000,000" had read "1e+12".
    group = html.split('<fieldset class="params params-fixed_ratio">', 1)[1].split("</fieldset>", 1)[0]
    assert group.lstrip().startswith("<legend>Fixed ratio</legend>") and 'for="f-arms-0-schedule-fixed_ratio-every">Every</label>' in group
    assert '>Points per unit</label>' in html and "(fixed ratio)" not in html and "e+" not in html
    assert "a whole number at least 1 and at most 1,000,000,000,000</p>" in group


def test_everything_displayed_is_escaped(as_role, client, auth):
    running(client, auth("editor"), ab_definition(name="<script>alert(1)</script>", description="<img src=x onerror=alert(2)>"))
    analyst = as_role("analyst")
    for path in ("/ui/experiments", "/ui/experiments/points-q4", "/ui/experiments/points-q4/results"):
        html = analyst.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, path
    page = analyst.get("/ui/users", query_string={"user_id": '"><svg onload=alert(3)>'}).get_data(as_text=True)
    assert "<svg onload" not in page and "&lt;svg onload" in page


def test_text_from_users_keeps_its_direction_to_itself(as_role, client, auth):
    # A right-to-left override in a name would otherwise reverse the key and the time written after it.
    running(client, auth("editor"), ab_definition(name="Promo \u202e"))
    assign(client, auth("storefront"), "points-q4", "\u202eshopper")
    analyst = as_role("analyst")
    for path in ("/ui/experiments", "/ui/experiments/points-q4", "/ui/experiments/points-q4/results"):
        assert "<bdi>Promo \u202e</bdi>" in analyst.get(path).get_data(as_text=True), path
    assert "<bdi>\u202eshopper</bdi>" in analyst.get("/ui/users", query_string={"user_id": "\u202eshopper"}).get_data(as_text=True)


def test_stored_text_quoted_in_the_consoles_own_words_or_json_cannot_reorder_them(as_role, client, auth, db):
    # A right-to-left override in an attribute's or a key's name reversed the rest of the console's sentence, and
    # one in a payload reversed every key and value after it.
    from service.usecases.keys import create_key

    targeted = ab_definition(targeting={"all": [{"attribute": "tier\u202e", "op": "eq", "value": "gold"}]})
    targeted["arms"][1]["payload"] = {"banner": "\u202egold", "url": "/offers"}
    running(client, auth("editor"), targeted)
    analyst = as_role("analyst")
    user_page = html_module.unescape(analyst.get("/ui/users", query_string={"user_id": "never-seen"}).get_data(as_text=True))
    assert "the rule also reads tier\\u202e, which only the storefront" in user_page and "\u202e" not in user_page
    experiment_page = html_module.unescape(analyst.get("/ui/experiments/points-q4").get_data(as_text=True))
    assert '"banner": "\\u202egold"' in experiment_page and '"attribute": "tier\\u202e"' in experiment_page
    _, key = create_key(db, "analyst", "ops \u202e team")
    client.post("/ui/sign-out", data={"csrf_token": csrf(client, "/ui/experiments")})
    signed_in = client.post("/ui/sign-in", data={"csrf_token": csrf(client), "api_key": key}, follow_redirects=True)
    assert "Signed in with the analyst key “ops \\u202e team”." in html_module.unescape(signed_in.get_data(as_text=True))


def test_a_multiplier_window_reads_in_utc_whatever_offset_it_was_sent_with(as_role, client, auth):
    body = ab_definition()
    window = {"factor": 1.5, "start": "2026-12-10T01:02:03.456789+05:30", "end": "2027-01-01T00:00:00Z"}
    body["arms"][1]["schedule"] = {**body["arms"][1]["schedule"], "multiplier": window}
    post_ok(client, "/v1/experiments", body, auth("editor"), status=201)
    page = html_module.unescape(as_role("analyst").get("/ui/experiments/points-q4").get_data(as_text=True))
    assert "×1.5 from 2026-12-09 19:32 UTC to 2027-01-01 00:00 UTC" in page


def test_a_user_is_looked_up_by_exactly_the_id_typed(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    arm = assign(client, auth("storefront"), "points-q4", "u1")["arm"]
    analyst = as_role("analyst")
    exact = analyst.get("/ui/users", query_string={"user_id": "u1"}).get_data(as_text=True)
    spaced = analyst.get("/ui/users", query_string={"user_id": "u1 "}).get_data(as_text=True)
    assert arm in exact and "matched exactly" not in exact
    assert "matched exactly" in spaced and arm not in spaced.split("</h2>", 1)[1]  # " u1 " was never enrolled
    # An id of spaces alone is an id the API takes like any other (the at-risk list links to it): it is looked up too.
    blank_arm = assign(client, auth("storefront"), "points-q4", "   ")["arm"]
    blank = analyst.get("/ui/users", query_string={"user_id": "   "}).get_data(as_text=True)
    assert blank_arm in blank.split("</h2>", 1)[1] and "No user" not in blank
    assert 'name="user_id" value=""' in analyst.get("/ui/users", query_string={"user_id": ""}).get_data(as_text=True)


def test_results_page_and_csv_match_the_api(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    for i in range(30):
        assign(client, auth("storefront"), "points-q4", f"u{i}")
    analyst = as_role("analyst")
    page = analyst.get("/ui/experiments/points-q4/results", query_string={"alpha": "0.1", "correction": "bh"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.count("<svg") >= 2 and "90.0%" in html
    csv = analyst.get("/ui/experiments/points-q4/results.csv", query_string={"metric": "conversion", "alpha": "0.1", "correction": "bh"})
    api = client.get("/v1/experiments/points-q4/results.csv", query_string={"metric": "conversion", "alpha": "0.1", "correction": "bh"}, headers=auth("analyst"))
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert csv.get_data(as_text=True).splitlines()[0] == api.get_data(as_text=True).splitlines()[0]
    assert csv.get_data(as_text=True).splitlines()[0].startswith("experiment,metric,metric_kind,test")
    assert len(csv.get_data(as_text=True).splitlines()) == 4
    bad = analyst.get("/ui/experiments/points-q4/results", query_string={"alpha": "2"})
    assert bad.status_code == 422 and 'id="f-alpha-error"' in bad.get_data(as_text=True)


def test_results_page_plots_and_tabulates_each_arms_difference_as_the_api_gives_it(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    shop = auth("storefront")
    outcomes = []
    for i in range(60):
        arm = assign(client, shop, "points-q4", f"u{i}")["arm"]
        if i % (2 if arm == "every5" else 5) == 0:
            outcomes.append({"outcome_id": f"o{i}", "experiment": "points-q4", "user_id": f"u{i}", "metric": "conversion", "value": 1})
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    api = {a["arm"]: a for a in get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["arms"]}
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    assert "Difference in conversion (percentage points) from control (95.0% intervals)" in html
    tiny = as_role("analyst").get("/ui/experiments/points-q4/results", query_string={"alpha": "0.0000001"}).get_data(as_text=True)
    assert "Rate [99.99999% CI]" in tiny and "100.0% CI" not in tiny
    for arm in ("every5", "lottery"):
        low, high = api[arm]["diff_ci"]
        shown = f"{api[arm]['diff'] * 100:+.1f} pp<br><span class=\"muted\">[{low * 100:+.1f} pp, {high * 100:+.1f} pp]</span>"
        assert shown in html, arm


def test_sign_out_ends_the_session_on_the_server_and_a_revoked_key_ends_it_at_once(app, as_role, client, auth, keys):
    editor = as_role("editor")
    cookie = editor.get_cookie("stickyloop_console", path="/ui").value
    held = app.session_interface.get_signing_serializer(app).loads(cookie)
    assert keys["editor"] not in cookie and keys["editor"] not in str(held)  # the cookie never holds the key
    token = csrf(editor, "/ui/experiments")
    assert editor.post("/ui/sign-out", data={"csrf_token": token}).status_code == 303
    assert editor.get("/ui/experiments").status_code == 303
    # A copy of the cookie taken before the sign-out signs nobody in.
    copy = app.test_client()
    copy.set_cookie("stickyloop_console", cookie, path="/ui")
    assert copy.get("/ui/experiments").status_code == 303
    as_role("analyst")
    key_id = next(k["id"] for k in client.get("/v1/keys", headers=auth("admin")).get_json()["keys"] if k["role"] == "analyst")
    assert client.delete(f"/v1/keys/{key_id}", headers=auth("admin")).status_code == 200
    gone = client.get("/ui/experiments")  # at once, not after the API's 1 s key cache
    assert gone.status_code == 303
    assert "its key was revoked" in client.get(gone.headers["Location"]).get_data(as_text=True)


def test_signing_in_again_ends_the_session_before_and_a_key_holds_a_bounded_number(app, client, keys, monkeypatch):
    from service.usecases import console_sessions

    sign_in(client, keys["editor"])
    editor_cookie = client.get_cookie("stickyloop_console", path="/ui").value
    sign_in(client, keys["analyst"])  # over the editor's session, without signing out
    copy = app.test_client()
    copy.set_cookie("stickyloop_console", editor_cookie, path="/ui")
    assert copy.get("/ui/models/new").status_code == 303  # the editor's session ended with the new sign-in
    monkeypatch.setattr(console_sessions, "SESSIONS_PER_KEY", 3)
    browsers = [app.test_client() for _ in range(5)]
    for browser in browsers:
        sign_in(browser, keys["analyst"])
    assert [b.get("/ui/experiments").status_code for b in browsers] == [303, 303, 200, 200, 200]  # the oldest went


def test_a_cookie_from_before_server_held_sessions_signs_in_once_and_loses_the_key(app, keys):
    browser = app.test_client()
    old = app.session_interface.get_signing_serializer(app).dumps({"api_key": keys["editor"], "csrf": "t" * 43})
    browser.set_cookie("stickyloop_console", old, path="/ui")
    assert browser.get("/ui/experiments").status_code == 200
    now = browser.get_cookie("stickyloop_console", path="/ui").value
    assert keys["editor"] not in str(app.session_interface.get_signing_serializer(app).loads(now))
    assert browser.get("/ui/models/new").status_code == 200


def test_the_training_form_at_the_run_limit_keeps_what_was_typed(as_role, db, config):
    from service.usecases.model_training import request_training

    editor = as_role("editor")
    for _ in range(config.training_max_runs):
        request_training(db, config, "als", {"factors": 8}, False)
    token = csrf(editor, "/ui/models/new")
    resp = editor.post("/ui/models/new", data={"csrf_token": token, "algorithm": "als", "params": '{"factors": 12}', "activate": "no"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 409 and "training runs are at work" in html and "&#34;factors&#34;: 12" in html, html[:2000]


def test_a_console_session_lasts_at_most_its_hours_however_active(app, as_role, monkeypatch):
    from service.usecases import console_sessions

    editor = as_role("editor")
    assert editor.get("/ui/experiments").status_code == 200
    monkeypatch.setattr(console_sessions, "SESSION_SECONDS", 0.0)  # as if 8 hours had passed since sign-in
    assert editor.get("/ui/experiments").status_code == 303


def test_sign_out_from_a_tab_opened_before_the_last_sign_in_still_signs_out(as_role, client, keys):
    editor = as_role("editor")
    old_tab = csrf(editor, "/ui/experiments")
    sign_in(editor, keys["editor"])  # a second tab signs in again: a new session, a new token
    origin = {"Origin": "http://localhost"}
    assert editor.post("/ui/sign-out", data={"csrf_token": old_tab}, headers={"Origin": "https://elsewhere.example"}).status_code == 403
    assert editor.get("/ui/experiments").status_code == 200  # another site cannot sign the user out
    assert editor.post("/ui/sign-out", data={"csrf_token": old_tab}, headers=origin).status_code == 303
    assert editor.get("/ui/experiments").status_code == 303


def test_a_mistyped_console_address_gets_the_consoles_page_and_the_api_keeps_json(as_role, client):
    editor = as_role("editor")
    for path in ("/ui/nothing", "/ui/experiments/points-q4/frobnicate", "/ui/experiments/a%2Fb", "/ui/models/..%2F..%2Fetc/activate"):
        resp = editor.get(path)
        assert resp.status_code == 404 and resp.mimetype == "text/html", path
        # An escaped slash stays in its segment: "a%2Fb" names an experiment (that does not exist), not a page.
        assert "There is no console page at this address" in resp.get_data(as_text=True) or "does not exist" in resp.get_data(as_text=True)
        assert "Sign out" in resp.get_data(as_text=True) and "Content-Security-Policy" in resp.headers  # the console's page, whole
    missing = editor.get("/ui/experiments/nope")
    assert missing.status_code == 404 and "nope" in missing.get_data(as_text=True)  # a page's own 404 says what is missing
    api = client.get("/v1/nothing")
    assert api.status_code == 404 and api.get_json()["error"]["code"] == "not_found"


def test_a_form_posted_after_its_key_was_revoked_says_why_and_leads_back(as_role, client, auth):
    editor = as_role("editor")
    token = csrf(editor, "/ui/new-experiment")
    key_id = next(k["id"] for k in client.get("/v1/keys", headers=auth("admin")).get_json()["keys"] if k["role"] == "editor")
    assert client.delete(f"/v1/keys/{key_id}", headers=auth("admin")).status_code == 200
    resp = editor.post("/ui/new-experiment", data={**form_of(), "csrf_token": token})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/ui/sign-in?next=/ui/new-experiment")
    page = editor.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Your console session ended" in page and "was not saved" in page


def test_console_routes_stay_out_of_the_openapi_document_and_send_safety_headers(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not any(p.startswith("/ui") for p in paths)
    resp = client.get("/ui/sign-in")
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["Cache-Control"] == "no-store"


def test_models_page_reloads_itself_while_a_version_trains_and_names_bad_parameters(as_role, db, config):
    from service.usecases import model_training as training

    editor = as_role("editor")
    assert "http-equiv" not in editor.get("/ui/models").get_data(as_text=True)
    training.request_training(db, config, "als", {}, False)  # recorded as training, never started
    # It names its address without a fragment: refreshing /ui/models#top (after a save) would only scroll.
    listed = editor.get("/ui/models").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="5; url=/ui/models">' in listed
    # With JavaScript the list updates in place instead (models.js), which leaves the keyboard's focus where it is.
    assert '<noscript><meta http-equiv="refresh"' in listed and "models.js" in listed and 'id="training-status" data-refresh' in listed
    # Someone tabbing to a version's links turns the reload off: it moves the focus back to the top.
    still = editor.get("/ui/models", query_string={"reload": "off"}).get_data(as_text=True)
    assert "http-equiv" not in still and "reload it every 5 seconds" in still
    assert "http-equiv" not in editor.get("/ui/models").get_data(as_text=True)  # remembered for the session
    assert "http-equiv" in editor.get("/ui/models", query_string={"reload": "on"}).get_data(as_text=True)
    # The form has a page of its own, which never reloads: what is typed there stays.
    form = editor.get("/ui/models/new").get_data(as_text=True)
    assert "http-equiv" not in form and 'id="activate" name="activate" value="yes" aria-describedby="activate-hint">' in form  # unticked
    token = csrf(editor, "/ui/models/new")
    bad_json = editor.post("/ui/models/new", data={"csrf_token": token, "algorithm": "als", "params": "{factors: 8"})
    assert bad_json.status_code == 422 and 'id="f-params-error"' in bad_json.get_data(as_text=True)
    unknown = editor.post("/ui/models/new", data={"csrf_token": token, "algorithm": "als", "params": '{"nonsense": 1}'})
    assert unknown.status_code == 422 and "nonsense" in unknown.get_data(as_text=True)
    twice = editor.post("/ui/models/new", data={"csrf_token": token, "algorithm": "als", "params": '{"factors": 8, "factors": 4096}'})
    assert twice.status_code == 422 and "twice in one object" in twice.get_data(as_text=True)


def test_activating_by_hand_warns_of_the_run_it_keeps_from_going_live(as_role, client, auth, db, config):
    from service.usecases import model_training as training
    from tests.helpers import train, two_tribes

    two_tribes(client, auth("storefront"))
    ready = train(client, auth("editor"), {"algorithm": "item_knn", "activate": False})["version"]
    editor = as_role("editor")
    assert "to be served when ready" not in editor.get(f"/ui/models/{ready}/activate").get_data(as_text=True)
    waiting = training.request_training(db, config, "als", {}, True)  # recorded as training, never started
    page = editor.get(f"/ui/models/{ready}/activate").get_data(as_text=True)
    assert f"<code>{waiting.version}</code> is training and was to be served when ready; after this activation it will not be" in page


def test_activating_says_how_the_version_served_now_scored_and_when_it_scored_higher(as_role, client, auth):
    from tests.helpers import train, two_tribes

    two_tribes(client, auth("storefront"))
    served = train(client, auth("editor"))
    weaker = train(client, auth("editor"), {"algorithm": "popularity", "activate": False})
    assert weaker["metrics"]["precision_at_10"] < served["metrics"]["precision_at_10"]
    page = as_role("editor").get(f"/ui/models/{weaker['version']}/activate").get_data(as_text=True)
    said = f"and {served['metrics']['precision_at_10']:.3f} for <code>{served['version']}</code> (als), served now"
    assert said in page and "lower than the version it would replace" in page


def test_edit_a_draft_keeps_what_the_form_shows(as_role, client, auth):
    # A save keeps the seconds, and a time the input cannot hold (microseconds, another offset) as stored when left as shown.
    window = {"factor": 2, "start": "2030-01-01T00:00:00.123456Z", "end": "2030-02-01T16:15:45.5+05:45"}
    body = ab_definition(weights=(1, 2, 1), targeting={"all": [{"attribute": "purchases", "op": "gte", "value": 1}]},
                         analysis={"sequential_tuning": 20000})  # a setting the form does not show
    body["arms"][1]["schedule"] = {**body["arms"][1]["schedule"], "multiplier": window}
    body["description"] = "\nfirst line\n  second line, & <more>  "  # a browser posts its line breaks as CRLF
    post_ok(client, "/v1/experiments", body, auth("editor"), status=201)
    before = client.get("/v1/experiments/points-q4", headers=auth("analyst")).get_json()
    editor = as_role("editor")
    form = editor.get("/ui/experiments/points-q4/edit").get_data(as_text=True)
    values = dict(re.findall(r'<input id="[^"]*" name="([^"]+)" type="[^"]*" value="([^"]*)"', form))
    values.update(re.findall(r'<input type="hidden" name="([^"]+\.was)" value="([^"]*)"', form))
    # What a browser's text area holds: the parser drops one newline right after the tag.
    shown = html_module.unescape(re.search(r'<textarea id="f-description" name="description"[^>]*>(.*?)</textarea>', form, re.S).group(1))
    values["description"] = shown.removeprefix("\n").replace("\n", "\r\n")
    assert values["arms.1.schedule.multiplier.start"] == "2030-01-01T00:00:00.123" and values["arms.1.weight"] == "2"
    assert values["arms.1.schedule.multiplier.end"] == "2030-02-01T10:30:45.500"
    # Post back exactly what the form shows, renamed: everything else must stay as it was.
    posted = {k: v for k, v in values.items() if v != ""}
    posted.update({"name": "Renamed", "type": "ab", "arms.0.schedule.type": "per_unit", "arms.1.schedule.type": "fixed_ratio",
                   "arms.2.schedule.type": "variable_ratio", "metrics.0.kind": "binary", "metrics.1.kind": "continuous",
                   "targeting": json_of(before["targeting"]), "csrf_token": csrf(editor, "/ui/experiments/points-q4/edit"),
                   "revision": re.search(r'name="revision" value="(\d+)"', form).group(1)})
    for i, arm in enumerate(before["arms"]):
        posted[f"arms.{i}.payload"] = json_of(arm["payload"])
    resp = editor.post("/ui/experiments/points-q4/edit", data=posted)
    assert resp.status_code == 303, resp.get_data(as_text=True)
    # The same form saved again from a second tab opened before that save: refused, not saved over it.
    stale = editor.post("/ui/experiments/points-q4/edit", data={**posted, "name": "Second tab", "description": "Typed in the second tab"})
    page = html_module.unescape(stale.get_data(as_text=True))
    assert stale.status_code == 409 and "It changed since this page was opened" in page and "Nothing was saved" in page
    # What was typed stays, and the message names what the stored draft has otherwise; the form is now of the stored revision.
    assert 'value="Second tab"' in page and "Typed in the second tab" in page
    assert "the stored version differs from it in: Description, Name." in page
    after = client.get("/v1/experiments/points-q4", headers=auth("analyst")).get_json()
    assert after["name"] == "Renamed"
    stored_revision = str(after["revision"])
    assert re.search(r'name="revision" value="(\d+)"', page).group(1) == stored_revision
    # A row added elsewhere meanwhile is not on the form: it is named, so a second save does not drop it unseen.
    four = [*after["arms"], {"key": "fourth", "weight": 1, "payload": {}, "schedule": None}]
    assert client.patch("/v1/experiments/points-q4", json={"arms": four}, headers=auth("editor")).status_code == 200
    again = html_module.unescape(editor.post("/ui/experiments/points-q4/edit", data={**posted, "revision": stored_revision, "traffic": "1.00"}).get_data(as_text=True))
    assert "the stored version differs from it in: Arm 4 (added)." in again  # and "1.00" is the stored traffic, 1: not named
    kept = ("description", "arms", "metrics", "targeting", "traffic", "primary_metric")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert after["analysis"]["sequential_tuning"] == 20000


class _BrowserForm(HTMLParser):
    """The fields a browser posts for a page's form of class `form_class`: inputs (ticked boxes only), text areas (with the
    parser's dropped first newline and CRLF line breaks), selects (the selected option, else the first)."""

    def __init__(self, form_class: str) -> None:
        super().__init__()
        self.form_class, self.inside, self.fields = form_class, False, {}
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = self.form_class in a.get("class", "").split()
        elif not self.inside or "name" not in a:
            if tag == "option" and self._select is not None and (self._select not in self.fields or "selected" in a):
                self.fields[self._select] = a.get("value", "")
        elif tag == "input" and (a.get("type") not in ("checkbox", "radio") or "checked" in a) and a.get("type") != "submit":
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields[self._textarea] = ""
        elif tag == "select":
            self._select = a["name"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None:
            value = self.fields[self._textarea].replace("\r\n", "\n").replace("\r", "\n")  # as a browser normalises it
            self.fields[self._textarea] = value.removeprefix("\n").replace("\n", "\r\n")
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.fields[self._textarea] += data


def as_posted(page: str, form_class: str) -> dict[str, str]:
    """What a browser posts when the form of class `form_class` on `page` is submitted untouched."""
    form = _BrowserForm(form_class)
    form.feed(page)
    return form.fields


def test_a_draft_saved_unedited_is_no_change(as_role, client, auth):
    # The form trimmed the name and turned the description's CRLF into LF, and so rewrote both on every save.
    post_ok(client, "/v1/experiments", {**ab_definition(), "name": "  Spaced name  ", "description": "a\r\nb\n"}, auth("editor"), status=201)
    before = get_ok(client, "/v1/experiments/points-q4", auth("analyst"))
    editor = as_role("editor")
    page = editor.get("/ui/experiments/points-q4/edit").get_data(as_text=True)
    resp = editor.post("/ui/experiments/points-q4/edit", data=as_posted(page, "experiment-form"))
    assert resp.status_code == 303, resp.get_data(as_text=True)
    # Nothing was edited, so nothing changed: not the name, the description, nor the revision a client compares.
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst")) == before


def test_a_conflict_names_only_what_the_other_save_changed(as_role, client, auth):
    # An A/B draft with no metric of its own: its form still posts the hidden bandit algorithm and the blank metric
    # row's kind, which the conflict message had named as changes ("Bandit › algorithm", "Metric 1 › kind").
    post_ok(client, "/v1/experiments", {**ab_definition(), "metrics": [], "primary_metric": "purchase_conversion"}, auth("editor"), status=201)
    editor = as_role("editor")
    first_tab = as_posted(editor.get("/ui/experiments/points-q4/edit").get_data(as_text=True), "experiment-form")
    second_tab = dict(first_tab)
    assert {"bandit.algorithm", "metrics.0.kind"} <= set(first_tab) and first_tab["metrics.0.key"] == ""
    assert editor.post("/ui/experiments/points-q4/edit", data={**first_tab, "name": "Renamed"}).status_code == 303
    refused = editor.post("/ui/experiments/points-q4/edit", data={**second_tab, "description": "typed in the second tab"})
    assert refused.status_code == 409
    # The description differs from what this tab typed, the name from what it showed: those two, and nothing hidden or blank.
    assert "the stored version differs from it in: Description, Name." in html_module.unescape(refused.get_data(as_text=True))


@pytest.mark.parametrize("posted, was, kept", [
    ("2030-01-01T00:00", "2030-01-01T00:00:00.000001Z", "2030-01-01T00:00:00.000001Z"),  # a browser posts "…:00.000" back so
    ("2030-01-01T00:00:00.000", "2030-01-01T00:00:00.000001Z", "2030-01-01T00:00:00.000001Z"),
    ("2030-02-01T10:30:45.500", "2030-02-01T16:15:45.5+05:45", "2030-02-01T16:15:45.5+05:45"),  # the same moment, as sent
    ("2030-01-01T00:01", "2030-01-01T00:00:00.000001Z", "2030-01-01T00:01:00Z"),  # edited: what was typed
    ("2030-01-01T00:00", "0001-01-01T00:00:00+01:00", "2030-01-01T00:00:00Z"),  # a forged stored time before Python's first instant
    ("", "2030-01-01T00:00:00Z", ""),  # cleared
])
def test_a_window_left_as_shown_keeps_the_time_stored(posted, was, kept):
    from service.http.console.experiment_form import _kept_time

    assert _kept_time({"t": posted, "t.was": was}, "t") == kept


@pytest.mark.parametrize("stored, shown", [
    ("2030-01-01T00:00:00Z", "2030-01-01T00:00"),
    ("2030-01-01T00:00:07+00:00", "2030-01-01T00:00:07"),
    ("2030-02-01T12:30:45.120000+02:00", "2030-02-01T10:30:45.120"),  # the same moment in UTC, as the input's label says
])
def test_a_window_is_shown_in_utc_to_the_precision_a_datetime_input_holds(stored, shown):
    from service.http.console.experiment_form import _datetime_local

    assert _datetime_local(stored) == shown


def json_of(value: Any) -> str:
    """JSON as the form's text areas hold it."""
    import json

    return json.dumps(value)


def test_bandit_settings_come_from_the_form(as_role, client, auth):
    editor = as_role("editor")
    form = form_of(type="bandit", **{"bandit.algorithm": "ucb1", "bandit.min_probability": "0.05", "bandit.attribution_hours": "48"})
    resp = editor.post("/ui/new-experiment", data={**form, "csrf_token": csrf(editor, "/ui/new-experiment")})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    stored = client.get("/v1/experiments/console-ab", headers=auth("analyst")).get_json()
    assert stored["type"] == "bandit" and stored["bandit"] == {"algorithm": "ucb1", "epsilon": 0.1, "min_probability": 0.05, "attribution_hours": 48}
    # The edit form shows every setting, so a save keeps them (the window was dropped before).
    shown = editor.get("/ui/experiments/console-ab/edit").get_data(as_text=True)
    assert 'name="bandit.attribution_hours" type="number" value="48"' in shown and 'name="bandit.epsilon" type="number" value="0.1"' in shown


def test_guardrails_a_lower_is_better_metric_and_the_analysis_come_from_the_form(as_role, client, auth):
    editor = as_role("editor")
    token = csrf(editor, "/ui/new-experiment")
    fields = form_of(**{"metrics.1.key": "complaints", "metrics.1.kind": "binary", "metrics.1.lower_is_better": "yes",
                        "guardrails": "complaints, retention_d7", "analysis.sequential": "yes", "analysis.cuped_days": "7"})
    wrong = editor.post("/ui/new-experiment", data={**fields, "guardrails": "complaints, refunds", "csrf_token": token})
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 422 and 'id="f-guardrails-error"' in html and "&#39;refunds&#39; is neither a declared metric" in html
    # Every typo of one pass at once, not one per submit.
    typos = editor.post("/ui/new-experiment", data={**fields, "primary_metric": "order", "guardrails": "complaints, revnue", "csrf_token": token})
    html = typos.get_data(as_text=True)
    assert typos.status_code == 422 and "2 fields need attention" in html and 'id="f-primary_metric-error"' in html and 'id="f-guardrails-error"' in html
    assert editor.post("/ui/new-experiment", data={**fields, "csrf_token": token}).status_code == 303
    stored = client.get("/v1/experiments/console-ab", headers=auth("analyst")).get_json()
    assert stored["metrics"][1] == {"key": "complaints", "kind": "binary", "higher_is_better": False}
    assert stored["guardrails"] == ["complaints", "retention_d7"]
    assert {k: stored["analysis"][k] for k in ("sequential", "cuped", "cuped_days")} == {"sequential": True, "cuped": False, "cuped_days": 7}
    detail = editor.get("/ui/experiments/console-ab").get_data(as_text=True)
    assert "complaints (binary, lower is better)" in detail and "complaints, retention_d7" in detail and "CUPED off" in detail
    form = editor.get("/ui/experiments/console-ab/edit").get_data(as_text=True)
    assert re.search(r'name="metrics.1.lower_is_better" value="yes" checked', form)
    assert re.search(r'name="analysis.sequential" value="yes" checked', form) and not re.search(r'name="analysis.cuped" value="yes" checked', form)
    assert 'value="complaints, retention_d7"' in form


def test_bandit_results_show_weighted_intervals_and_warn_where_few_users_carry_them(as_role, client, auth):
    running(client, auth("editor"), bandit_definition(arms=3))
    shop = auth("storefront")
    for u in range(60):
        arm = assign(client, shop, "bonus-bandit", f"b{u}")["arm"]
        if arm == "arm1" or u % 7 == 0:
            post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"b{u}", "experiment": "bonus-bandit", "user_id": f"b{u}", "metric": "conversion"}]}, shop)
    api = get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))
    html = as_role("analyst").get("/ui/experiments/bonus-bandit/results").get_data(as_text=True)
    assert "p (adjusted), naive" in html and "IPW mean [CI]" in html and ">significant<" not in html
    few = [a["arm"] for a in api["arms"] if a["ipw_effective_users"] is not None and a["ipw_effective_users"] < 60]
    assert few and ("effective users" in html) and ("IPW figures rest on fewer than 60 effective users" in html)
    assert html.count("effective users</span>") == len(few)
    # SNIPW beside IPW, as the page's note tells a reader to compare by either.
    from service.http.console import formatting as fmt

    assert "SNIPW mean [CI]" in html and all(fmt.interval(fmt.clamped(a["snipw_ci"], 0, 1), "binary") in html for a in api["arms"] if a["snipw_ci"])


def _two_arms(client: FlaskClient, auth: Any, count: int, prefix: str) -> dict[str, list[str]]:
    """A running A/B test whose third arm gets nobody, and `count` users assigned to it, by arm."""
    running(client, auth("editor"), ab_definition(weights=(1, 1, 0.000001)))
    users: dict[str, list[str]] = {"control": [], "every5": []}
    for u in range(count):
        users[assign(client, auth("storefront"), "points-q4", f"{prefix}{u}")["arm"]].append(f"{prefix}{u}")
    return users


def test_an_arm_with_few_conversions_is_flagged_on_the_results_page(as_role, client, auth):
    shop = auth("storefront")
    users = _two_arms(client, auth, 40, "t")
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o{k}", "experiment": "points-q4", "user_id": user, "metric": "conversion"}
                                                  for k, user in enumerate(users["every5"][:3])]}, shop)
    api = {a["arm"]: a for a in get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["arms"]}
    note = next(n for n in api["every5"]["notes"] if "normal approximation" in n)
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    assert f"<strong>every5</strong>: {note}" in html.replace("&#39;", "'")


def test_a_stale_form_whatever_its_fields_hold_is_the_conflict_page_not_a_server_error(as_role, client, auth):
    # Comparing a stale form with the stored version read each field: "[" * 100_000 overflowed the
    # standard JSON parser, and a row named "²" or 5,000 nines failed int().
    running(client, auth("editor"), ab_definition())
    editor = as_role("editor")
    form = editor.get("/ui/experiments/points-q4/settings").get_data(as_text=True)
    revision = re.search(r'name="revision" value="(\d+)"', form).group(1)
    posted = {"csrf_token": csrf(editor, "/ui/experiments/points-q4/settings"), "revision": revision, "name": "Q4 points", "description": "",
              "guardrails": "", "analysis.cuped": "yes", "analysis.cuped_days": "14"}
    assert editor.post("/ui/experiments/points-q4/settings", data={**posted, "name": "Saved first"}).status_code == 303
    for field, value in (("description", "[" * 100_000), ("name", '{"a":' * 10_000), ("analysis.cuped_days", "[" * 1000)):
        stale = editor.post("/ui/experiments/points-q4/settings", data={**posted, field: value})
        assert stale.status_code == 409 and "It changed since this page was opened" in stale.get_data(as_text=True), field
    post_ok(client, "/v1/experiments", ab_definition(key="draft-1"), auth("editor"), status=201)
    page = editor.get("/ui/experiments/draft-1/edit").get_data(as_text=True)
    draft = {**form_of(key="draft-1"), "csrf_token": csrf(editor, "/ui/experiments/draft-1/edit"), "revision": re.search(r'name="revision" value="(\d+)"', page).group(1)}
    assert client.patch("/v1/experiments/draft-1", json={"name": "Changed elsewhere"}, headers=auth("editor")).status_code == 200
    for extra in ({"arms.\u00b2.key": "x"}, {"metrics.\u00b9.key": "x"}, {"arms." + "9" * 5000 + ".key": "x"}, {"targeting": '{"a":' * 10_000}):
        stale = editor.post("/ui/experiments/draft-1/edit", data={**draft, **extra})
        assert stale.status_code == 409 and "It changed since this page was opened" in stale.get_data(as_text=True), list(extra)[0][:20]
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst"))["name"] == "Saved first"


def test_a_started_experiment_changes_its_guardrails_and_analysis_from_its_settings_page(as_role, client, auth):
    running(client, auth("editor"), ab_definition(layer="checkout", traffic=0.5))
    editor = as_role("editor")
    assert 'href="/ui/experiments/points-q4/settings"' in editor.get("/ui/experiments/points-q4").get_data(as_text=True)
    form = editor.get("/ui/experiments/points-q4/settings").get_data(as_text=True)
    assert 'name="traffic"' not in form  # a layered experiment's share of the layer is fixed once it starts
    token = csrf(editor, "/ui/experiments/points-q4/settings")
    revision = re.search(r'name="revision" value="(\d+)"', form).group(1)
    posted = {"csrf_token": token, "revision": revision, "name": "Q4 points", "description": "", "guardrails": "retention_d7, spend", "analysis.sequential": "yes",
              "analysis.cuped": "yes", "analysis.cuped_days": "7"}
    wrong = editor.post("/ui/experiments/points-q4/settings", data={**posted, "guardrails": "refunds"})
    assert wrong.status_code == 422 and 'id="f-guardrails-error"' in wrong.get_data(as_text=True)
    assert editor.post("/ui/experiments/points-q4/settings", data=posted).status_code == 303
    # The same page saved again, after that change: refused, so the first save is not undone unseen.
    again = editor.post("/ui/experiments/points-q4/settings", data={**posted, "guardrails": "spend"})
    assert again.status_code == 409 and "It changed since this page was opened" in again.get_data(as_text=True)
    assert "differs from it in: Guardrails." in again.get_data(as_text=True) and 'value="spend"' in again.get_data(as_text=True)
    stored = get_ok(client, "/v1/experiments/points-q4", auth("analyst"))
    assert (stored["status"], stored["traffic"], stored["guardrails"]) == ("running", 0.5, ["retention_d7", "spend"])
    assert {k: stored["analysis"][k] for k in ("sequential", "cuped", "cuped_days")} == {"sequential": True, "cuped": True, "cuped_days": 7}
    assert [g["metric"] for g in get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["guardrails"]] == ["retention_d7", "retention_d7", "spend", "spend"]
    running(client, auth("editor"), ab_definition(key="ramp", traffic=0.1))
    ramp_form = editor.get("/ui/experiments/ramp/settings").get_data(as_text=True)
    ramp = {**posted, "csrf_token": csrf(editor, "/ui/experiments/ramp/settings"), "name": "Ramp", "traffic": "0.5", "guardrails": "",
            "revision": re.search(r'name="revision" value="(\d+)"', ramp_form).group(1)}
    assert editor.post("/ui/experiments/ramp/settings", data=ramp).status_code == 303
    assert get_ok(client, "/v1/experiments/ramp", auth("analyst"))["traffic"] == 0.5
    post_ok(client, "/v1/experiments", ab_definition(key="a-draft"), auth("editor"), status=201)
    assert editor.get("/ui/experiments/a-draft/settings").status_code == 409
    assert as_role("analyst").get("/ui/experiments/points-q4/settings").status_code == 403
    # A save that edits neither the name nor the description leaves them as stored: padded, and with LF line breaks
    # (a browser sends CRLF), so a long description cannot grow past its bound on a save that only adds a guardrail.
    patched = client.patch("/v1/experiments/ramp", json={"name": "  Ramp  ", "description": "line one\n" * 1_100}, headers=auth("editor")).get_json()
    editor = as_role("editor")
    ramp_form = editor.get("/ui/experiments/ramp/settings").get_data(as_text=True)
    unchanged = {**ramp, "csrf_token": csrf(editor, "/ui/experiments/ramp/settings"), "name": "  Ramp  ", "description": "line one\r\n" * 1_100,
                 "traffic": "0.5", "revision": re.search(r'name="revision" value="(\d+)"', ramp_form).group(1)}
    assert editor.post("/ui/experiments/ramp/settings", data=unchanged).status_code == 303
    assert get_ok(client, "/v1/experiments/ramp", auth("analyst"))["revision"] == patched["revision"]
    saved = editor.post("/ui/experiments/ramp/settings", data={**unchanged, "guardrails": "retention_d7", "csrf_token": csrf(editor, "/ui/experiments/ramp/settings")})
    assert saved.status_code == 303
    ramp_now = get_ok(client, "/v1/experiments/ramp", auth("analyst"))
    assert (ramp_now["name"], ramp_now["description"], ramp_now["guardrails"]) == ("  Ramp  ", "line one\n" * 1_100, ["retention_d7"])
    # A post without the name or description field (made by hand: a browser sends both) leaves them as stored.
    partial = {k: v for k, v in unchanged.items() if k not in ("name", "description")}
    partial.update(csrf_token=csrf(editor, "/ui/experiments/ramp/settings"), revision=str(ramp_now["revision"]), guardrails="spend")
    assert editor.post("/ui/experiments/ramp/settings", data=partial).status_code == 303
    ramp_now = get_ok(client, "/v1/experiments/ramp", auth("analyst"))
    assert (ramp_now["name"], ramp_now["description"], ramp_now["guardrails"]) == ("  Ramp  ", "line one\n" * 1_100, ["spend"])
    # Stopped, its reading stays as it was: the page offers only the name and description, and saves them alone.
    post_ok(client, "/v1/experiments/points-q4/stop", None, auth("editor"))
    editor = as_role("editor")
    stopped_form = editor.get("/ui/experiments/points-q4/settings").get_data(as_text=True)
    assert 'name="guardrails"' not in stopped_form and 'name="analysis.sequential"' not in stopped_form
    assert "stay as they were at the stop" in stopped_form
    renamed = {"csrf_token": csrf(editor, "/ui/experiments/points-q4/settings"), "name": "Q4 points, done", "description": "",
               "revision": re.search(r'name="revision" value="(\d+)"', stopped_form).group(1)}
    assert editor.post("/ui/experiments/points-q4/settings", data=renamed).status_code == 303
    after = get_ok(client, "/v1/experiments/points-q4", auth("analyst"))
    assert (after["name"], after["guardrails"], after["analysis"]) == ("Q4 points, done", stored["guardrails"], stored["analysis"])


def test_a_run_in_progress_is_cancelled_from_the_models_page_and_only_a_ready_version_is_offered_to_serve(as_role, client, auth, db):
    import time

    from service.store.tables import ModelVersionRow

    now = time.time()
    with db.write() as session:
        session.add(ModelVersionRow(version="v-failed", status="failed", algorithm="als", params={}, matrix={}, evaluation={}, metrics={}, data={}, created_at=now, error="boom"))
        session.add(ModelVersionRow(version="v-running", status="training", algorithm="als", params={}, matrix={}, evaluation={}, metrics={},
                                    data={"progress": {"trials_done": 2, "trials": 5}}, created_at=now, heartbeat_at=now))
    editor = as_role("editor")
    listing = editor.get("/ui/models").get_data(as_text=True)
    assert "2 of 5 tuning trials" in listing and 'href="/ui/models/v-running/cancel"' in listing
    refused = editor.get("/ui/models/v-failed/activate")
    assert refused.status_code == 409 and "only a ready version can be served" in refused.get_data(as_text=True) and 'name="confirm"' not in refused.get_data(as_text=True)
    token = csrf(editor, "/ui/models/v-running/cancel")
    assert editor.post("/ui/models/v-running/cancel", data={"csrf_token": token}).status_code == 422  # the box unticked
    assert editor.post("/ui/models/v-running/cancel", data={"csrf_token": token, "confirm": "yes"}).status_code == 303
    assert get_ok(client, "/v1/models/v-running", auth("editor"))["cancelled"] is True
    assert editor.get("/ui/models/v-running/cancel").status_code == 409
    assert as_role("analyst").get("/ui/models/v-running/cancel").status_code == 403


def test_the_user_page_names_the_recommender_each_of_the_users_arms_serves(as_role, client, auth):
    from tests.helpers import train, two_tribes

    two_tribes(client, auth("storefront"))
    version = train(client, auth("editor"), {"algorithm": "item_knn"})["version"]
    arms = [{"key": "knn", "payload": {"recommender": {"model_version": version}}}, {"key": "pop", "payload": {"recommender": {"algorithm": "popularity"}}}]
    running(client, auth("editor"), {"key": "recs", "name": "Recommenders", "arms": arms, "metrics": [{"key": "clicked"}]})
    arm = get_ok(client, "/v1/users/ua1/recommendations?experiment=recs", auth("storefront"))["arm"]
    html = as_role("analyst").get("/ui/users?user_id=ua1").get_data(as_text=True)
    expected = f"item_knn model {version}" if arm == "knn" else "the most popular items, as the active model counts them"
    assert f"recommendations from {expected}" in html
    post_ok(client, "/v1/experiments/recs/stop", None, auth("editor"))  # its users are served by the active model again
    html = as_role("analyst").get("/ui/users?user_id=ua1").get_data(as_text=True)
    assert f"recommendations came from {expected} until it stopped; now from the active model" in html
    # The form for the next experiment offers that version for a recommender arm.
    form = as_role("editor").get("/ui/new-experiment").get_data(as_text=True)
    # Told apart from other versions by how it was trained and scored, the one served now marked.
    option = re.search(rf'<option value="version:{version}">{version} \(item_knn, ([^<]*)\)</option>', form)
    assert option is not None and option.group(1).endswith("active now"), form


def test_recommender_arms_are_chosen_from_ready_versions_in_the_form(as_role, client, auth):
    from tests.helpers import train, two_tribes

    two_tribes(client, auth("storefront"))
    versions = [train(client, auth("editor"), {"algorithm": "item_knn"})["version"] for _ in range(6)]
    version = versions[-1]
    editor = as_role("editor")
    form = editor.get("/ui/new-experiment").get_data(as_text=True)
    assert all(f'<option value="version:{v}">{v} (item_knn' in form for v in versions)  # every ready version, not the newest few
    arms = {"arms.0.key": "active", "arms.0.schedule.type": "", "arms.1.key": "knn", "arms.1.schedule.type": "", "arms.1.recommender": f"version:{version}",
            "arms.2.key": "pop", "arms.2.schedule.type": "", "arms.2.recommender": "popularity", "arms.2.payload": '{"banner": "top"}'}

    def post(**changes: str) -> Any:
        return editor.post("/ui/new-experiment", data={**form_of(**{**arms, **changes}), "csrf_token": csrf(editor, "/ui/new-experiment")})

    for changes in ({"arms.1.payload": '{"recommender": {"algorithm": "popularity"}}'}, {"arms.1.recommender": "version:" + "v" * 65}, {"arms.1.recommender": "<b>ghost</b>"}):
        refused = post(**changes)
        html = refused.get_data(as_text=True)
        assert refused.status_code == 422 and 'id="f-arms-1-recommender-error"' in html, changes
        assert "<b>ghost</b>" not in html
    assert "(not a ready version)" in post(**{"arms.1.recommender": "version:" + "v" * 65}).get_data(as_text=True)  # what was sent stays on the page
    # A row with a recommender chosen but no key had been left out without a word.
    keyless = post(**{"arms.1.key": ""})
    assert keyless.status_code == 422 and 'id="f-arms-1-key-error"' in keyless.get_data(as_text=True)
    assert post().status_code == 303
    stored = {a["key"]: a["payload"] for a in get_ok(client, "/v1/experiments/console-ab", auth("analyst"))["arms"]}
    assert stored == {"active": {}, "knn": {"recommender": {"model_version": version}}, "pop": {"banner": "top", "recommender": {"algorithm": "popularity"}}}
    # The edit form shows each choice in its select and the rest of the payload in its text area.
    edit = editor.get("/ui/experiments/console-ab/edit").get_data(as_text=True)
    assert f'<option value="version:{version}" selected>' in edit and '<option value="popularity" selected>' in edit
    assert '{&#34;banner&#34;: &#34;top&#34;}</textarea>' in edit


@pytest.mark.parametrize("payload", [
    {"recommender": {"model_version": "popularity"}},  # a version named like the popularity choice
    {"recommender": {"model_version": " v1 "}},  # spaces are part of a name
    {"recommender": {"model_version": "v1\nv2"}},  # a browser would send the line break back as \r\n: left in the JSON
    {"recommender": {"algorithm": "popularity", "model_version": "v1"}},  # a spelling the select cannot show: left in the JSON
    {"banner": "<i>top</i>", "recommender": {"algorithm": "popularity"}},
])
def test_saving_the_edit_form_unchanged_keeps_a_recommender_arm_as_stored(as_role, client, auth, payload):
    from service.http.console.experiment_form import values_of

    definition = {**ab_definition(), "arms": [{"key": "control", "payload": {}}, {"key": "treatment", "payload": payload}]}
    post_ok(client, "/v1/experiments", definition, auth("editor"), status=201)
    editor = as_role("editor")
    stored = get_ok(client, "/v1/experiments/points-q4", auth("analyst"))
    values = values_of(stored)  # what the edit form shows, field by field
    choice = values.get("arms.1.recommender")
    assert choice is None or f'<option value="{choice}" selected>' in editor.get("/ui/experiments/points-q4/edit").get_data(as_text=True)
    saved = editor.post("/ui/experiments/points-q4/edit", data={**values, "revision": str(stored["revision"]), "csrf_token": csrf(editor, "/ui/experiments/points-q4/edit")})
    assert saved.status_code == 303, saved.get_data(as_text=True)[:2000]
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst"))["arms"][1]["payload"] == payload


def test_what_if_values_another_split_as_the_api_does_and_names_each_bad_input(as_role, client, auth):
    from service.http.console import formatting as fmt

    running(client, auth("editor"), bandit_definition())
    shop = auth("storefront")
    for u in range(150):
        if assign(client, shop, "bonus-bandit", f"w{u}")["arm"] != "arm0" and u % 3:
            post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"w{u}", "experiment": "bonus-bandit", "user_id": f"w{u}", "metric": "conversion"}]}, shop)
    analyst = as_role("analyst")
    assert "/ui/experiments/bonus-bandit/what-if?metric=conversion" in analyst.get("/ui/experiments/bonus-bandit/results").get_data(as_text=True)
    best = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": "best_arm"}, auth("analyst"))
    html = analyst.get("/ui/experiments/bonus-bandit/what-if").get_data(as_text=True)  # the best arm, until asked otherwise
    assert "is the best arm on these same data, so this estimate leans high" in html  # chosen on the data it is valued on
    chosen = max(best["allocation"], key=best["allocation"].get)
    assert f"Serving only {chosen}: conversion {fmt.pct(best['snipw']['value'])}" in html
    # A self-normalised rate's interval is shown cut at 100 % when it reaches past it.
    assert fmt.interval(fmt.clamped(best["snipw"]["ci"], 0, 1), "binary") in html and fmt.pct(best["as_run"]) in html
    # Shares are relative weights: 1, 1, 2 is a quarter, a quarter and a half.
    split = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": {"arm0": 0.25, "arm1": 0.25, "arm2": 0.5}}, auth("analyst"))
    html = analyst.get("/ui/experiments/bonus-bandit/what-if", query_string={"allocation": "shares", "weight.arm0": "1", "weight.arm1": "1", "weight.arm2": "2"}).get_data(as_text=True)
    assert f"Allocating arm0 25.0%, arm1 25.0%, arm2 50.0%: conversion {fmt.pct(split['snipw']['value'])}" in html
    assert "leans high" not in html  # shares the analyst chose were not picked on these data
    for query, named in [
        ({"weight.arm0": "-1"}, ["weight-0"]), ({"weight.arm1": "NaN"}, ["weight-1"]), ({"weight.arm2": "1e400"}, ["weight-2"]),
        ({"weight.arm0": "0", "weight.arm1": "0", "weight.arm2": "0"}, ["allocation"]), ({"weight.arm0": "x", "alpha": "2"}, ["weight-0", "alpha"]),
        ({"metric": "nope", "weight.arm0": "x"}, ["metric", "weight-0"]), ({"allocation": "bogus"}, ["allocation"]),
        ({"weight.arm0": "1" + "0" * 400}, ["weight-0"]),  # past a double: math.isfinite had raised, a 500
    ]:
        refused = analyst.get("/ui/experiments/bonus-bandit/what-if", query_string={"allocation": "shares", **query})
        page_html = refused.get_data(as_text=True)
        assert refused.status_code == 422 and all(f'id="f-{n}-error"' in page_html for n in named), query
        assert "answer-title" not in page_html
    # An old link naming an arm the experiment no longer has is refused, not read as something else.
    stale = analyst.get("/ui/experiments/bonus-bandit/what-if", query_string={"allocation": "shares", "weight.gone": "1"})
    assert stale.status_code == 422 and "weight.gone: not a setting of this page" in stale.get_data(as_text=True)
    # Once a weight is sent, an arm not named gets none.
    alone = analyst.get("/ui/experiments/bonus-bandit/what-if", query_string={"allocation": "shares", "weight.arm2": "1"}).get_data(as_text=True)
    assert "Allocating arm2 100.0%:" in alone
    assert analyst.get("/ui/experiments/nope/what-if").status_code == 404
    assert as_role("storefront").get("/ui/experiments/bonus-bandit/what-if").status_code == 403


def test_what_if_gives_arms_whose_keys_differ_by_a_dot_or_a_dash_inputs_of_their_own(as_role, client, auth):
    body = bandit_definition()
    body["arms"] = [{"key": k, "schedule": {"type": "fixed_ratio", "every": 2, "points": 50}} for k in ("a.b", "a-b", "a_b")]
    running(client, auth("editor"), body)
    html = as_role("analyst").get("/ui/experiments/bonus-bandit/what-if", query_string={"allocation": "shares", "weight.a.b": "x"}).get_data(as_text=True)
    ids = re.findall(r'<input id="(f-weight-[^"]*)" name="weight\.([^"]*)"', html)
    assert ids == [("f-weight-0", "a.b"), ("f-weight-1", "a-b"), ("f-weight-2", "a_b")]
    assert html.count('id="f-weight-0-error"') == 1 and 'aria-describedby="f-weight-0-error"' in html and "f-weight-1-error" not in html


def test_what_if_serves_the_lowest_arm_of_a_metric_where_lower_is_better(as_role, client, auth):
    complaints = {"key": "complaints", "kind": "binary", "higher_is_better": False}
    running(client, auth("editor"), bandit_definition(metrics=[{"key": "conversion", "kind": "binary"}, complaints]))
    shop = auth("storefront")
    outcomes = []
    for u in range(120):
        arm = assign(client, shop, "bonus-bandit", f"c{u}")["arm"]
        if u % {"arm0": 20, "arm1": 2, "arm2": 5}[arm] == 0:
            outcomes.append({"outcome_id": f"c{u}", "experiment": "bonus-bandit", "user_id": f"c{u}", "metric": "complaints", "value": 1})
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    results = get_ok(client, "/v1/experiments/bonus-bandit/results?metric=complaints", auth("analyst"))
    lowest = min((a for a in results["arms"] if a["snipw_mean"] is not None), key=lambda a: a["snipw_mean"])["arm"]
    html = as_role("analyst").get("/ui/experiments/bonus-bandit/what-if?metric=complaints").get_data(as_text=True)
    assert f"Serving only {lowest}: complaints" in html and "the lowest self-normalised estimate, as lower is better" in html
    # The API's best_arm stays the highest, as the contract defines it.
    api = post_ok(client, "/v1/experiments/bonus-bandit/evaluate", {"allocation": "best_arm", "metric": "complaints"}, auth("analyst"))
    highest = max((a for a in results["arms"] if a["snipw_mean"] is not None), key=lambda a: a["snipw_mean"])["arm"]
    assert api["allocation"][highest] == 1.0


def test_a_lower_is_better_metric_reads_the_right_way_round_on_the_results_page(as_role, client, auth):
    complaints = {"key": "complaints", "kind": "binary", "higher_is_better": False}
    running(client, auth("editor"), ab_definition(metrics=[{"key": "conversion"}, complaints], guardrails=["complaints"]))
    shop = auth("storefront")
    outcomes = []
    # Counted within each arm, so that control and lottery complain at the same rate whatever the split (each
    # experiment's salt is random): counted by user, lottery came out significantly better about one run in 40.
    seen: dict[str, int] = {}
    for u in range(240):
        arm = assign(client, shop, "points-q4", f"u{u}")["arm"]
        seen[arm] = seen.get(arm, 0) + 1
        if seen[arm] % (2 if arm == "every5" else 10) == 0:  # every5 complains far more
            outcomes.append({"outcome_id": f"c{u}", "experiment": "points-q4", "user_id": f"u{u}", "metric": "complaints", "value": 1})
        if u % 3 == 0:
            post_ok(client, "/v1/rewards", {"action_id": f"a{u}", "user_id": f"u{u}", "experiment": "points-q4", "value": 30.0}, shop)
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    api = get_ok(client, "/v1/experiments/points-q4/results?metric=complaints", auth("analyst"))
    every5 = next(a for a in api["arms"] if a["arm"] == "every5")
    assert every5["chance_to_beat_control"] > 0.999  # the API's figure: the chance of exceeding the control
    html = as_role("analyst").get("/ui/experiments/points-q4/results?metric=complaints").get_data(as_text=True)
    assert "Chance to be below control (lower is better)" in html and "left of the dashed zero line are better" in html
    row = html.split('<th scope="row">every5', 1)[1].split("</tr>", 1)[0]
    assert "&lt;0.1%" in row and "not established" not in row  # the worse arm: no cost paid for a gain, no near-certain chance
    # Significantly worse: shaded and drawn as worse, not as a win; its guardrail fails, in a badge of its own.
    assert every5["significant"] and '<tr class="significant worse">\n      <th scope="row">every5' in html
    forest = html.split('id="forest-title"', 1)[1].split("</figure>", 1)[0]
    assert 'stroke="#d55e00"' in forest and 'stroke="#009e73"' not in forest
    guard = next(g for g in api["guardrails"] if g["arm"] == "every5")
    assert guard["status"] == "fail" and '<span class="badge fail">fail</span> every5 on complaints' in html


def test_a_confirmation_posted_after_signing_out_elsewhere_leads_to_sign_in(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    editor = as_role("editor")
    token = csrf(editor, "/ui/experiments/points-q4/pause")
    assert editor.post("/ui/sign-out", data={"csrf_token": token}).status_code == 303  # another tab signs out
    resp = editor.post("/ui/experiments/points-q4/pause", data={"csrf_token": token, "confirm": "yes"}, headers={"Origin": "http://localhost"})
    assert resp.status_code == 303 and "/ui/sign-in" in resp.headers["Location"]
    assert "Your console session ended" in editor.get(resp.headers["Location"]).get_data(as_text=True)
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst"))["status"] == "running"


def test_the_results_page_says_when_figures_are_cuped_adjusted_and_switches_cuped_and_sequential(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    shop = auth("storefront")
    now = time.time()

    events = []
    for i in range(60):
        assign(client, shop, "points-q4", f"u{i}", timestamp=iso(now - 3 * 86_400))
        if i % 2:  # buyers before exposure tend to buy again: CUPED has a covariate
            events.append({"event_id": f"pre{i}", "user_id": f"u{i}", "item_id": "i1", "type": "purchase", "value": 10.0, "timestamp": iso(now - 5 * 86_400)})
        if i % 2 or i % 7 == 0:
            events.append({"event_id": f"post{i}", "user_id": f"u{i}", "item_id": "i2", "type": "purchase", "value": 10.0, "timestamp": iso(now - 86_400)})
    post_ok(client, "/v1/events", {"events": events}, shop)
    analyst = as_role("analyst")
    api = get_ok(client, "/v1/experiments/points-q4/results?metric=purchase_conversion", auth("analyst"))
    assert api["cuped"] is not None
    html = analyst.get("/ui/experiments/points-q4/results", query_string={"metric": "purchase_conversion"}).get_data(as_text=True)
    assert "Adjusted with CUPED" in html and "Adjusted rate [95.0% CI]" in html and "as the experiment says (on)" in html
    assert "cuped=false" in html  # the link to the unadjusted figures
    windowed = analyst.get("/ui/experiments/points-q4/results", query_string={"metric": "purchase_conversion", "days": "30"}).get_data(as_text=True)
    assert "days=30&amp;cuped=false" in windowed or "cuped=false&amp;days=30" in windowed  # the retention window the page was read with stays
    off = analyst.get("/ui/experiments/points-q4/results", query_string={"metric": "purchase_conversion", "cuped": "false", "sequential": "true"})
    text = off.get_data(as_text=True)
    assert off.status_code == 200 and "Adjusted with CUPED" not in text and "Rate [95.0% CI]" in text
    assert '<option value="false" selected>off</option>' in text and "two proportion z sequential" in text
    unadjusted = get_ok(client, "/v1/experiments/points-q4/results?metric=purchase_conversion&cuped=false&sequential=true", auth("analyst"))
    low, high = unadjusted["arms"][1]["diff_ci"]  # a sequence on few users: the page cuts it to ±100 points
    assert f"[{max(low, -1) * 100:+.1f} pp, {min(high, 1) * 100:+.1f} pp]" in text
    # "Download CSV" submits the switches as they stand to the CSV's address, as a browser sends them
    # ("as the experiment says" is an empty value): the file is the API's for the same settings.
    assert 'formaction="/ui/experiments/points-q4/results.csv"' in text
    sent = {"metric": "purchase_conversion", "alpha": "0.05", "correction": "holm", "days": "7", "cuped": "false", "sequential": "true"}
    for switches, api_query in ((sent, "cuped=false&sequential=true"), ({**sent, "cuped": "", "sequential": ""}, "")):
        console_csv = analyst.get("/ui/experiments/points-q4/results.csv", query_string=switches)
        api_csv = client.get(f"/v1/experiments/points-q4/results.csv?metric=purchase_conversion&{api_query}", headers=auth("analyst"))
        assert console_csv.status_code == 200 and _without_times(console_csv) == _without_times(api_csv)


def _without_times(resp: Any) -> list[dict[str, str]]:
    """A results CSV's rows without the time they were computed at."""
    return [{k: v for k, v in row.items() if k != "computed_at"} for row in csv_module.DictReader(io.StringIO(resp.get_data(as_text=True)))]


def test_an_empty_control_row_is_named_rather_than_the_next_arm_becoming_the_control(as_role, client, auth):
    editor = as_role("editor")
    token = csrf(editor, "/ui/new-experiment")
    moved = form_of(**{"arms.0.key": "", "arms.0.schedule.type": "", "arms.2.key": "lottery", "arms.2.schedule.type": "variable_ratio",
                       "arms.2.schedule.variable_ratio.mean": "5", "arms.2.schedule.variable_ratio.points": "50"})
    resp = editor.post("/ui/new-experiment", data={**moved, "csrf_token": token})
    html = resp.get_data(as_text=True)
    beside = re.search(r'<p class="error" id="f-arms-0-key-error">(.*?)</p>', html)
    assert resp.status_code == 422 and beside and "control" in beside.group(1)
    assert 'value="lottery"' in html  # what was typed stays
    assert client.get("/v1/experiments/console-ab", headers=auth("editor")).status_code == 404


def test_a_cost_is_not_called_established_for_an_arm_whose_interval_clears_0_but_is_not_significant_after_correction(as_role, client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    from scipy import stats

    # Spend 10 or 20 in control and lottery, and in every5 as much more as makes Welch's p about
    # 0.035: its 95 % interval clears 0, and Holm's correction over two comparisons doubles p.
    arms: dict[str, list[str]] = {"control": [], "every5": [], "lottery": []}
    for u in range(90):  # every exposed user gets a value: one without would count as 0
        arms[assign(client, shop, "points-q4", f"s{u}")["arm"]].append(f"s{u}")
    base = {arm: [10.0 + 10 * (i % 2) for i in range(len(users))] for arm, users in arms.items()}
    shift = next(d / 100 for d in range(100, 1000) if stats.ttest_ind([v + d / 100 for v in base["every5"]], base["control"], equal_var=False).pvalue < 0.035)
    outcomes = [{"outcome_id": f"o-{user}", "experiment": "points-q4", "user_id": user, "metric": "spend", "value": v + (shift if arm == "every5" else 0)}
                for arm, users in arms.items() for user, v in zip(users, base[arm])]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    for arm, actions in (("control", 1), ("every5", 5)):  # a cost compares two arms' ledgers, each of which has granted points
        for i in range(actions):
            post_ok(client, "/v1/rewards", {"action_id": f"r-{arm}-{i}", "user_id": arms[arm][0], "experiment": "points-q4", "value": 10.0}, shop)
    every5 = next(a for a in get_ok(client, "/v1/experiments/points-q4/results?metric=spend", auth("analyst"))["arms"] if a["arm"] == "every5")
    assert every5["diff_ci"][0] > 0 and not every5["significant"] and every5["cost_per_incremental"] is not None
    html = as_role("analyst").get("/ui/experiments/points-q4/results?metric=spend").get_data(as_text=True)
    row = html.split('<th scope="row">every5', 1)[1].split("</tr>", 1)[0]
    assert "not established" in row and "not widened for the 2 comparisons with the control" in html


def test_results_settings_errors_are_in_plain_words_tied_to_their_controls_and_summarised_first(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    resp = as_role("analyst").get("/ui/experiments/points-q4/results", query_string={"metric": "nope", "days": "0", "alpha": "5"})
    html = resp.get_data(as_text=True)
    assert "query.metric" not in html and "Input should" not in html
    summary = html.split('class="error-summary"', 1)[1].split("</div>", 1)[0]
    assert "autofocus" in html.split('class="error-summary"', 1)[1].split(">", 1)[0] and summary.count("<li>") == 3
    for name in ("metric", "days", "alpha"):
        control = re.search(rf'<(select|input) id="f-{name}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in control and f"f-{name}-error" in control, control
        assert f'id="f-{name}-error"' in html
    assert 'aria-describedby="alpha-hint f-alpha-error"' in html


def test_schedules_without_reward_actions_show_no_cost_rather_than_a_cost_of_0(as_role, client, auth):
    shop, analyst = auth("storefront"), auth("analyst")
    running(client, auth("editor"), ab_definition())
    arms = {f"n{u}": assign(client, shop, "points-q4", f"n{u}")["arm"] for u in range(60)}
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"n-{u}", "experiment": "points-q4", "user_id": f"n{u}", "metric": "conversion"} for u in range(0, 60, 2)]}, shop)

    def rows():
        return {a["arm"]: a for a in get_ok(client, "/v1/experiments/points-q4/results", analyst)["arms"]}

    def api_cost(row, control):
        # The API's formula, null only for the control or a difference not above 0; the notes say what it lacks.
        return None if row["diff"] is None or row["diff"] <= 0 else (row["points_per_user"] - control["points_per_user"]) / row["diff"]

    def costs_as_the_api_says(now):
        return all(now[arm]["cost_per_incremental"] == pytest.approx(api_cost(now[arm], now["control"])) for arm in ("every5", "lottery"))

    first = rows()
    assert all(a["reward_actions"] == 0 and any("no reward action" in n for n in a["notes"]) for a in first.values())
    assert first["control"]["cost_per_incremental"] is None and costs_as_the_api_says(first)
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    assert html.count("no actions yet") == 3 and "It has cost" not in html and "It has also granted" not in html
    # Actions for the control's users only: the other arms still have no cost to compare, in the console.
    control_user = next(u for u, arm in arms.items() if arm == "control")
    post_ok(client, "/v1/rewards", {"action_id": "n-c", "user_id": control_user, "experiment": "points-q4", "value": 10.0}, shop)
    now = rows()
    assert now["control"]["reward_actions"] == 1 and not any("no reward action" in n for n in now["control"]["notes"])
    assert all(now[arm]["reward_actions"] == 0 for arm in ("every5", "lottery")) and costs_as_the_api_says(now)
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    assert html.count("no actions yet") == 2 and "It has cost" not in html and "It has also granted" not in html
    # An action after the stop is recorded, but no schedule decided it: it counts for nothing here.
    post_ok(client, "/v1/experiments/points-q4/stop", None, auth("editor"))
    every5_user = next(u for u, arm in arms.items() if arm == "every5")
    post_ok(client, "/v1/rewards", {"action_id": "n-e", "user_id": every5_user, "experiment": "points-q4", "value": 10.0}, shop)
    assert rows()["every5"]["reward_actions"] == 0 and costs_as_the_api_says(rows())


def test_a_gain_from_an_arm_where_everyone_converted_is_flagged_and_its_cost_not_called_established(as_role, client, auth):
    shop = auth("storefront")
    users = _two_arms(client, auth, 60, "t")
    converted = users["every5"] + users["control"][:6]  # all of every5: no non-conversions there
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o-{u}", "experiment": "points-q4", "user_id": u, "metric": "conversion"} for u in converted]}, shop)
    for u in users["every5"] + users["control"]:
        for k in range(5):  # every5's fifth action earns 100 points; the control earns 1 a unit
            post_ok(client, "/v1/rewards", {"action_id": f"a-{u}-{k}", "user_id": u, "experiment": "points-q4", "action": "purchase", "value": 1.0}, shop)
    every5 = {a["arm"]: a for a in get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["arms"]}["every5"]
    assert every5["significant"] and every5["diff_ci"][0] > 0 and every5["cost_per_incremental"] is not None
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    row = html.split('<th scope="row">every5', 1)[1].split("</tr>", 1)[0]
    assert "few conversions" in row and "not established" in row


def test_a_sample_ratio_mismatch_leaves_the_results_page_naming_no_winner(as_role, client, auth):
    from experiments.assignment import ab_arm

    shop = auth("storefront")
    weights = (1, 1, 0.000001)
    running(client, auth("editor"), ab_definition(weights=weights))
    # The storefront asks for every control user of its range but only some of every5's: the arms' sizes stop matching their weights.
    ((salt,),) = client.application.extensions["stickyloop"].db.fetch("SELECT salt FROM experiments WHERE key = ?", ("points-q4",))
    chosen = {"control": [], "every5": []}
    for u in (f"m{k}" for k in range(2_000)):
        arm = ("control", "every5", "lottery")[ab_arm(salt, "points-q4", u, weights)]
        if len(chosen.get(arm, [0] * 300)) < (300 if arm == "control" else 150):
            chosen[arm].append(u)
    for arm, users in chosen.items():
        assert [assign(client, shop, "points-q4", u)["arm"] for u in users] == [arm] * len(users)
    converted = chosen["every5"][:75] + chosen["control"][:30]
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o-{u}", "experiment": "points-q4", "user_id": u, "metric": "conversion"} for u in converted]}, shop)
    api = get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))
    assert api["srm"]["mismatch"] and api["arms"][1]["significant"]
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    assert "chi-square p &lt; 0.0001" in html and "p = &lt;" not in html
    row = html.split('<th scope="row">every5', 1)[1].split("</tr>", 1)[0]
    assert "below alpha, but the split is off" in row and 'class="significant"' not in html
    reading = html.split('id="reading-title"', 1)[1].split("</section>", 1)[0]
    assert "every5 looks better than control on conversion" in reading and "beats" not in reading
    assert "cumulative, so it can rise as users have longer to act" in html


def test_the_results_page_draws_each_arms_difference_by_day_with_its_confidence_sequence(as_role, client, auth):
    shop = auth("storefront")
    users = _two_arms(client, auth, 120, "d")
    converted = users["every5"][: len(users["every5"]) // 2] + users["control"][: len(users["control"]) // 5]
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o-{u}", "experiment": "points-q4", "user_id": u, "metric": "conversion"} for u in converted]}, shop)
    last = get_ok(client, "/v1/experiments/points-q4/results/daily?metric=conversion&alpha=0.1", auth("analyst"))["days"][-1]["arms"][1]
    analyst = as_role("analyst")
    html = analyst.get("/ui/experiments/points-q4/results", query_string={"metric": "conversion", "alpha": "0.1"}).get_data(as_text=True)
    chart = html.split('aria-label="Difference from the control by day, with its confidence sequence"', 1)[1].split("</figure>", 1)[0]
    # The chart's description, which a screen reader reads, names the last day's difference as the API gives it, in percentage points.
    assert "with its 90.0% confidence sequence, by day" in chart and f"every5 {html_module.escape(format_difference(last['diff']))}" in html_module.unescape(chart)
    assert 'class="band"' in chart and 'stroke-dasharray="4 3"' in chart  # the one day's sequence as a bar, and the zero line
    # A mean has no sequence in the series, so no such chart; neither has a bandit, whose arms compare only by IPW.
    assert "confidence sequence" not in analyst.get("/ui/experiments/points-q4/results", query_string={"metric": "spend"}).get_data(as_text=True)
    running(client, auth("editor"), bandit_definition())
    for u in range(20):
        assign(client, shop, "bonus-bandit", f"b{u}")
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"b-{u}", "experiment": "bonus-bandit", "user_id": f"b{u}", "metric": "conversion"} for u in range(0, 20, 3)]}, shop)
    bandit = as_role("analyst").get("/ui/experiments/bonus-bandit/results").get_data(as_text=True)
    assert "Cumulative conversion per exposed user" in bandit and "confidence sequence" not in bandit


def format_difference(value: float) -> str:
    from service.http.console.formatting import difference
    return difference(value, "binary")


def test_the_results_page_says_in_words_which_arm_wins_and_what_stands_in_the_way(as_role, client, auth):
    shop = auth("storefront")
    users = _two_arms(client, auth, 200, "v")
    converted = users["every5"][: len(users["every5"]) // 2] + users["control"][: len(users["control"]) // 10]
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o-{u}", "experiment": "points-q4", "user_id": u, "metric": "conversion"} for u in converted]}, shop)
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    reading = html.split('id="reading-title"', 1)[1].split("</section>", 1)[0]
    assert "every5 beats control on conversion" in reading and "no guardrails are set" in reading  # ab_definition declares none
    assert "switch on sequential intervals" in reading  # running, and intervals for one look
    retention = as_role("analyst").get("/ui/experiments/points-q4/results", query_string={"metric": "retention_d7"}).get_data(as_text=True)
    assert "Retention is read by exposure cohort" in retention and "query.metric" not in retention
    sequential = as_role("analyst").get("/ui/experiments/points-q4/results", query_string={"sequential": "true"}).get_data(as_text=True)
    assert "switch on sequential intervals" not in sequential.split('id="reading-title"', 1)[1].split("</section>", 1)[0]


@pytest.mark.parametrize("lower_is_better", [False, True])
def test_a_bandits_reading_names_the_arm_its_ipw_estimates_put_first(lower_is_better):
    # The page told the analyst to compare a bandit's arms by their IPW figures and then said nothing of them.
    from service.http.console.verdicts import verdicts

    def arm(name, mean, ci, effective=500.0):
        return {"arm": name, "users": 400, "total": 40, "ipw_mean": mean, "ipw_ci": ci, "ipw_effective_users": effective}

    first, second = ("b", "a") if lower_is_better else ("a", "b")
    answer = {"type": "bandit", "status": "running", "test": "two_proportion_z", "metric": "conversion", "metric_kind": "binary", "srm": None,
              "arms": [arm("control", 0.10, [0.08, 0.12]), arm("a", 0.20, [0.17, 0.23]), arm("b", 0.05, [0.03, 0.07])]}
    said = [(v.tone, v.text) for v in verdicts(answer, lower_is_better, set(), {})]
    clear = f"By the IPW estimates {first} leads on conversion"
    assert [(tone, text) for tone, text in said if text.startswith(clear)] == [(
        "ok", f"{clear} ({'5.0% [3.0%, 7.0%]' if lower_is_better else '20.0% [17.0%, 23.0%]'}), "
              "and its interval clears every other arm's: the best arm on this metric so far.")]
    answer["arms"][0]["ipw_ci"] = [0.0, 0.5]  # the control's estimate could be anywhere
    said = [v.text for v in verdicts(answer, lower_is_better, set(), {})]
    assert any(text.startswith(clear) and text.endswith("its interval overlaps control's, so no arm is clearly best yet.") for text in said), said
    answer["arms"][1 if first == "a" else 2]["ipw_effective_users"] = 12.4
    said = [(v.tone, v.text) for v in verdicts(answer, lower_is_better, set(), {})]
    assert any(tone == "warn" and text.endswith("but on about 12 effective users: too few to call it best yet.") for tone, text in said), said
    assert second not in {text.split()[4] for _, text in said if text.startswith("By the IPW")}


def test_verdicts_name_a_failing_guardrail_a_mismatch_and_a_stopped_experiment():
    from service.http.console.verdicts import verdicts
    from service.usecases import results

    def arm(name, users, diff=None, ci=None, significant=None, cost=None):
        return {"arm": name, "users": users, "total": 10, "diff": diff, "diff_ci": ci, "significant": significant,
                "p_value_adjusted": None if diff is None else 0.001, "cost_per_incremental": cost}

    answer = {
        "type": "ab", "status": "stopped", "test": "two_proportion_z", "metric": "conversion", "metric_kind": "binary",
        "arms": [arm("control", 195), arm("every5", 208, 0.109, [0.04, 0.18], True, 4.985), arm("lottery", 194, -0.08, [-0.15, -0.01], True)],
        "srm": {"mismatch": True},
        "guardrails": [{"arm": "every5", "metric": "complaints", "diff": 0.047, "diff_ci": [0.01, 0.084], "status": "fail", "note": None}],
    }
    said = [(v.tone, v.text) for v in verdicts(answer, False, set(), {"complaints": "binary"})]
    assert said[0][0] == "warn" and "sample ratio mismatch" in said[0][1]
    assert any("measure what users did before the stop" in text for _, text in said)
    # Stopped early on a fixed-horizon p-value: the reading says what that does to the evidence, and how to read it safely.
    assert any(v == "warn" and "stopped before reaching it because a result looked significant" in text for v, text in said)
    sequential = [v.text for v in verdicts({**answer, "test": "two_proportion_z_sequential"}, False, set(), {"complaints": "binary"})]
    assert not any("looked significant" in text for text in sequential)
    # With the split off, no arm is named a winner or a loser: the mismatch may separate them, not the arm.
    assert ("warn", "every5 looks better than control on conversion (+10.9 pp [+4.0 pp, +18.0 pp]), but with the arms' sizes off their "
                    "weights this difference may come from whatever enrols users unevenly, not from the arm: find that cause before deciding. "
                    "It also fails a guardrail (complaints +4.7 pp).") in said
    assert not any("beats" in text for _, text in said)
    said = [(v.tone, v.text) for v in verdicts({**answer, "srm": {"mismatch": False}}, False, set(), {"complaints": "binary"})]
    assert ("warn", "every5 beats control on conversion (+10.9 pp [+4.0 pp, +18.0 pp]) but fails a guardrail (complaints +4.7 pp): "
                    "weigh the two before rolling it out. It has cost 4.985 points per extra conversion.") in said
    assert ("warn", "lottery is worse than control on conversion: -8.0 pp [-15.0 pp, -1.0 pp].") in said
    answer["srm"] = None
    # A failing guardrail is named whatever the primary metric says, and a stopped test is not told to wait.
    answer["guardrails"] += [{"arm": "lottery", "metric": "complaints", "diff": 0.05, "diff_ci": [0.01, 0.09], "status": "fail", "note": None}]
    answer["arms"][2].update(diff=0.01, diff_ci=[-0.05, 0.07], significant=False)
    said = [(v.tone, v.text) for v in verdicts(answer, False, set(), {"complaints": "binary"})]
    assert ("warn", "lottery: no difference from control on conversion shown (+1.0 pp [-5.0 pp, +7.0 pp], adjusted p = 0.0010). "
                    "It also fails a guardrail (complaints +5.0 pp).") in said
    bandit = {**answer, "type": "bandit", "status": "running", "srm": None}
    assert not any("sequential" in v.text for v in verdicts(bandit, False, set(), {}))
    # A guardrail without an interval is "ok" in the API; the reading does not call it passed.
    unread = {**answer, "srm": None, "guardrails": [{"arm": "every5", "metric": "retention_d7", "diff": None, "diff_ci": None, "status": "ok", "note": "no users yet"}]}
    said = [(v.tone, v.text) for v in verdicts(unread, False, set(), {"retention_d7": "binary"})]
    assert ("warn", "every5 beats control on conversion: +10.9 pp [+4.0 pp, +18.0 pp], significant after correction, but its guardrail (retention_d7) "
                    "has no evidence yet either way: wait until it can be read before rolling every5 out. It has cost 4.985 points per extra conversion.") in said
    # A "warn" without an interval leans the worse way so far, which the reading says beside its badge's "warn".
    leaning = {**unread, "guardrails": [{**unread["guardrails"][0], "diff": -0.02, "status": "warn", "note": None}]}
    said = [(v.tone, v.text) for v in verdicts(leaning, False, set(), {"retention_d7": "binary"})]
    assert any(tone == "warn" and "its guardrail (retention_d7, worse so far) has no evidence yet either way" in text for tone, text in said)
    # A negative cost: the arm gains while granting fewer points per user than the control. The ratio of that
    # saving to the gain grows as the gain shrinks, so the reading gives the saving per user instead.
    cheaper = {**answer, "srm": None, "guardrails": []}
    cheaper["arms"] = [{**answer["arms"][0], "points_per_user": 82.5}, {**answer["arms"][1], "cost_per_incremental": -572.4, "points_per_user": 20.1}]
    said = [v.text for v in verdicts(cheaper, False, set(), {})]
    assert any(text.endswith("It is also cheaper: it has granted 62.4 fewer points per user than control.") for text in said), said
    assert not any("572.4" in text for text in said)
    # While it runs the points are those granted so far; a schedule that has paid nothing yet has no known cost.
    running_cheaper = {**cheaper, "status": "running", "test": "two_proportion_z_sequential"}
    said = [v.text for v in verdicts(running_cheaper, False, set(), {})]
    assert any(text.endswith("It is also cheaper: it has granted 62.4 fewer points per user than control so far.") for text in said), said
    unpaid = {**running_cheaper, "arms": [{**cheaper["arms"][0], "reward_actions": 80, "points_per_user": 2.0},
                                          {**cheaper["arms"][1], "reward_actions": 76, "points_per_user": 0.0, "notes": [results.UNPAID]}]}
    said = [v.text for v in verdicts(unpaid, False, set(), {})]
    assert any(text.endswith("What it costs is not known yet: every5 recorded reward actions but granted no points so far, "
                             "as a schedule that pays on every Nth action or after an interval does at first.") for text in said), said
    assert not any("fewer points" in text for text in said)
    # An arm without a schedule grants nothing by design (the API then adds no note): its cost is 0 and known, not owed later.
    unscheduled = {**unpaid, "arms": [unpaid["arms"][0], {**unpaid["arms"][1], "notes": []}]}
    said = [v.text for v in verdicts(unscheduled, False, set(), {})]
    assert any(text.endswith("It is also cheaper: it has granted 2 fewer points per user than control so far.") for text in said), said
    # A significant winner of 16 users is not called one, and no guardrail declared is not "none fails".
    small = {**cheaper, "arms": [cheaper["arms"][0], {**cheaper["arms"][1], "users": 16}]}
    said = [(v.tone, v.text) for v in verdicts(small, False, set(), {})]
    assert said[-1][0] == "warn" and said[-1][1].startswith("every5 beats control on conversion (+10.9 pp [+4.0 pp, +18.0 pp]), but every5 has only 16 users: "
                                                           "a result this small moves with a few users either way; confirm it with more users before rolling every5 out."), said
    both = {**cheaper, "arms": [{**cheaper["arms"][0], "users": 20}, {**cheaper["arms"][1], "users": 20}]}
    assert "but every5 and control have only 20 and 20 users:" in [v.text for v in verdicts(both, False, set(), {})][-1]
    said = [v.text for v in verdicts(cheaper, False, set(), {})]
    assert any("significant after correction, and no guardrails are set." in text for text in said), said
    # Nobody converted among hundreds: more likely a metric the storefront does not send than a rare one.
    silent = {**cheaper, "arms": [{**a, "total": 0, "diff": 0.0, "diff_ci": [-0.01, 0.01], "significant": False} for a in cheaper["arms"]]}
    said = [v.text for v in verdicts(silent, False, {"every5"}, {})]
    assert "No user of any arm has conversion yet, among 403 exposed: if it is not that rare, check that the storefront sends " \
           "outcomes (POST /v1/outcomes with metric 'conversion') for these users." in said, said
    assert not any("No user of any arm" in v.text for v in verdicts(cheaper, False, set(), {}))
    # A retention metric counts a user once their window has closed: nobody exposed long enough is not "no users".
    young = {**cheaper, "status": "running", "metric": "retention_d7", "arms": [{**a, "users": 0} for a in cheaper["arms"]]}
    assert [v.text for v in verdicts(young, False, set(), {})] == [
        "Nothing to decide yet: retention_d7 counts a user once their day-7 window has closed, and an arm and the control both need users exposed 8 or more days ago."]
    # A stopped experiment will get no more users: nothing to decide, and nothing to wait for.
    assert [v.text for v in verdicts({**young, "status": "stopped"}, False, set(), {})] == [
        "Nothing to decide: the experiment stopped before an arm and the control both had users whose day-7 window closed before the stop."]
    empty = {**cheaper, "status": "stopped", "arms": [{**a, "users": 0} for a in cheaper["arms"]]}
    assert [v.text for v in verdicts(empty, False, set(), {})] == ["Nothing to decide: the experiment stopped before an arm and the control both had exposed users."]
    # Without a correction, "significant" is not said to be after one.
    uncorrected = [v.text for v in verdicts({**cheaper, "correction": "none"}, False, set(), {})]
    assert any("significant (no correction asked for), and no guardrails are set." in text for text in uncorrected), uncorrected


def test_a_paused_experiment_is_resumed_not_started_and_a_draft_reads_as_one(as_role, client, auth):
    client.post("/v1/experiments", json=ab_definition(), headers=auth("editor"))
    editor = as_role("editor")
    assert "It is <strong>a draft</strong>." in editor.get("/ui/experiments/points-q4/start").get_data(as_text=True)
    for action in ("start", "pause"):
        assert client.post(f"/v1/experiments/points-q4/{action}", headers=auth("editor")).status_code == 200
    assert "Resume…" in editor.get("/ui/experiments/points-q4").get_data(as_text=True)
    page = editor.get("/ui/experiments/points-q4/start").get_data(as_text=True)
    assert "<h1>Resume points-q4?</h1>" in page and "keep their arms" in page and "Yes, resume points-q4" in page
    token = csrf(editor, "/ui/experiments/points-q4/start")
    editor.post("/ui/experiments/points-q4/start", data={"confirm": "yes", "csrf_token": token})
    assert get_ok(client, "/v1/experiments/points-q4", auth("analyst"))["status"] == "running"


def test_a_start_refused_for_a_full_layer_says_who_holds_it_and_offers_the_draft_s_form(as_role, client, auth):
    for key, traffic in (("left", 0.5), ("right", 0.5), ("third", 0.3)):
        post_ok(client, "/v1/experiments", {**ab_definition(key), "layer": "checkout", "traffic": traffic}, auth("editor"), status=201)
        if key != "third":
            post_ok(client, f"/v1/experiments/{key}/start", None, auth("editor"))
    editor = as_role("editor")
    token = csrf(editor, "/ui/experiments/third/start")
    refused = editor.post("/ui/experiments/third/start", data={"confirm": "yes", "csrf_token": token})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "<h1>third was not started</h1>" in page and "held by left [0, 0.5) and right [0.5, 1)" in page
    assert 'href="/ui/experiments/third/edit">Edit the draft</a>' in page and 'name="confirm"' not in page
    assert get_ok(client, "/v1/experiments/third", auth("analyst"))["status"] == "draft"


def test_the_planner_answers_as_the_api_does_and_names_a_bad_input_beside_it(as_role, client, auth):
    analyst = as_role("analyst")
    blank = analyst.get("/ui/plan")
    assert blank.status_code == 200 and re.search(r'name="baseline"[^>]*value="0.1"', blank.get_data(as_text=True)) and "users per arm" not in blank.get_data(as_text=True)
    question = {"metric_kind": "binary", "baseline": "0.1", "mde": "0.02", "mde_type": "absolute", "alpha": "0.05", "power": "0.8",
                "arms": "3", "correction": "holm", "daily_users": "500"}
    api = post_ok(client, "/v1/plans/sample-size", {"metric_kind": "binary", "baseline": 0.1, "mde": 0.02, "arms": 3, "daily_users": 500}, auth("analyst"))
    html = analyst.get("/ui/plan", query_string=question).get_data(as_text=True)
    assert f"{api['users_per_arm']:,} users per arm, {api['total_users']:,} in all: {api['days']:,} days at 500 users a day" in html
    seq = api["sequential"]
    assert f"plan for <strong>{seq['users_per_arm']:,} users per arm, {seq['total_users']:,} in all</strong>, {seq['days']:,} days" in html
    assert "split by the Holm correction" in html
    bad = analyst.get("/ui/plan", query_string={**question, "mde": "-1", "power": "1e308"})
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422 and 'id="f-mde-error"' in text and 'id="f-power-error"' in text and 'value="1e308"' in text
    assert "must be greater than 0" in text and "Input should" not in text
    thousand = analyst.get("/ui/plan", query_string={**question, "daily_users": "1e3"}).get_data(as_text=True)
    assert "days at 1,000 users a day" in thousand
    # A power just short of 1 does not read 100 %, nor one user "users".
    sure = analyst.get("/ui/plan", query_string={**question, "power": "0.99999999", "daily_users": "1"}).get_data(as_text=True)
    assert "found at least 99.999999% of the time" in sure and " at 1 user a day" in sure
    relative = analyst.get("/ui/plan", query_string={**question, "baseline": "0.99", "mde": "0.5", "mde_type": "relative"}).get_data(as_text=True)
    assert "the rate to detect must lie in (0, 1), got baseline x (1 + mde) = 1.485" in relative  # not 1.4849999999999999, nor "baseline + mde"
    huge = analyst.get("/ui/plan", query_string={**question, "baseline": "1" + "0" * 400})
    assert huge.status_code == 422 and 'id="f-baseline-error"' in huge.get_data(as_text=True)
    arabic = analyst.get("/ui/plan", query_string={**question, "arms": "\u0663"})
    assert arabic.status_code == 422 and 'id="f-arms-error"' in arabic.get_data(as_text=True)
    running(client, auth("editor"), ab_definition())
    assert "intervals are at 0.0000100%" in analyst.get("/ui/experiments/points-q4/results", query_string={"alpha": "0.9999999"}).get_data(as_text=True)
    typo = analyst.get("/ui/experiments/points-q4/results", query_string={"sequental": "true", "days": "7"})
    assert typo.status_code == 422 and "&#39;sequental&#39; is not a setting of this page" in typo.get_data(as_text=True)
    # A setting the CSV cannot use sends the browser back to the page, which says what is wrong beside its field.
    back = analyst.get("/ui/experiments/points-q4/results.csv", query_string={"alpha": "2", "days": "30"})
    assert back.status_code == 303 and back.headers["Location"].startswith("/ui/experiments/points-q4/results?") and "alpha=2" in back.headers["Location"]
    shown = analyst.get(back.headers["Location"])
    assert shown.status_code == 422 and 'id="f-alpha-error"' in shown.get_data(as_text=True)
    assert analyst.get("/ui/experiments/points-q4/results.csv", query_string={"bogus": "1"}).status_code == 303
    # A metric the experiment does not have is the use case's to refuse: the page names it too.
    unknown = analyst.get("/ui/experiments/points-q4/results.csv", query_string={"metric": "complaints"})
    assert unknown.status_code == 303 and unknown.headers["Location"] == "/ui/experiments/points-q4/results?metric=complaints"
    assert analyst.get(unknown.headers["Location"]).status_code == 422
    odd = analyst.get("/ui/experiments/points-q4/results.csv?alpha=2&key=y&_external=1")  # names url_for would have taken as its own
    assert odd.status_code == 303 and odd.headers["Location"] == "/ui/experiments/points-q4/results?alpha=2&key=y&_external=1"
    switch = analyst.get("/ui/experiments/points-q4/results", query_string={"cuped": "maybe"})
    assert switch.status_code == 422 and 'id="f-cuped-error"' in switch.get_data(as_text=True) and "Input should" not in switch.get_data(as_text=True)
    continuous = analyst.get("/ui/plan", query_string={**question, "metric_kind": "continuous", "baseline": "30", "sd": "", "mde": "1"})
    assert continuous.status_code == 422 and 'id="f-sd-error"' in continuous.get_data(as_text=True)
    assert as_role("storefront").get("/ui/plan").status_code == 403


def test_a_daily_series_across_a_new_year_labels_its_days_with_the_year(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    shop = auth("storefront")
    assign(client, shop, "points-q4", "old", timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 400 * 86_400)))
    assign(client, shop, "points-q4", "new")
    first = get_ok(client, "/v1/experiments/points-q4/results/daily?metric=conversion", auth("analyst"))["days"][0]["date"]
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    assert f">{first}<" in html


def test_the_at_risk_page_lists_pages_and_downloads_as_the_api_does(as_role, client, auth):
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60 * 86_400))
    events = [{"event_id": f"e{u}", "user_id": u, "item_id": "i1", "type": "purchase", "value": v, "timestamp": old}
              for u, v in (("big", 12345.67), ("small", 10.0), ("=cmd", 50.0))]
    events.append({"event_id": "fresh", "user_id": "active", "item_id": "i1", "type": "purchase", "value": 500.0})
    post_ok(client, "/v1/events", {"events": events}, auth("storefront"))
    analyst = as_role("analyst")
    html = analyst.get("/ui/users/at-risk").get_data(as_text=True)
    rows = re.findall(r'<th scope="row"><a href="[^"]+"><code>([^<]+)</code>', html)
    assert rows == ["big", "=cmd", "small"] and "End of the list." in html
    assert '<td class="num">12,345.67</td>' in html and "e+0" not in html  # revenue as stored, not "1.235e+04"
    first = analyst.get("/ui/users/at-risk", query_string={"limit": "1"}).get_data(as_text=True)
    assert re.findall(r"<code>([^<]+)</code></a></th>", first) == ["big"]
    following = re.search(r'href="(/ui/users/at-risk\?[^"]*cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert re.findall(r"<code>([^<]+)</code></a></th>", analyst.get(following).get_data(as_text=True)) == ["=cmd"]
    csv = analyst.get("/ui/users/at-risk.csv", query_string={"limit": "2"})
    api = client.get("/v1/users/at-risk.csv?limit=2", headers=auth("analyst"))
    ours, theirs = (list(csv_module.reader(io.StringIO(resp.get_data(as_text=True), newline=""))) for resp in (csv, api))
    assert [r[:2] + r[3:] for r in ours] == [r[:2] + r[3:] for r in theirs] and ours[1][0] == "big" and ours[2][0] == "'=cmd"  # idle_days moves with the clock
    assert csv.headers["X-Next-Cursor"] == api.headers["X-Next-Cursor"]
    bad = analyst.get("/ui/users/at-risk", query_string={"idle_days": "-1", "cursor": "nope"})
    assert bad.status_code == 422 and 'id="f-idle_days-error"' in bad.get_data(as_text=True)
    tampered = analyst.get("/ui/users/at-risk", query_string={"cursor": "bm9wZQ"})
    assert tampered.status_code == 422 and "not a cursor this service gave out" in tampered.get_data(as_text=True)
    # A CSV link with settings the list cannot use goes back to the page, which says what is wrong beside each field.
    for asked in ("limit=0", "cursor=zzz", "cursor=bm9wZQ"):
        back = analyst.get(f"/ui/users/at-risk.csv?{asked}")
        assert back.status_code == 303 and back.headers["Location"] == f"/ui/users/at-risk?{asked}", asked
        assert analyst.get(back.headers["Location"]).status_code == 422
    assert as_role("storefront").get("/ui/users/at-risk").status_code == 403


def test_a_draft_is_deleted_after_its_box_is_ticked_and_a_started_one_cannot_be(as_role, client, auth):
    client.post("/v1/experiments", json=ab_definition(), headers=auth("editor"))
    editor = as_role("editor")
    assert "Delete draft…" in editor.get("/ui/experiments/points-q4").get_data(as_text=True)
    token = csrf(editor, "/ui/experiments/points-q4/delete")
    unticked = editor.post("/ui/experiments/points-q4/delete", data={"csrf_token": token})
    assert unticked.status_code == 422 and client.get("/v1/experiments/points-q4", headers=auth("editor")).status_code == 200
    done = editor.post("/ui/experiments/points-q4/delete", data={"csrf_token": token, "confirm": "yes"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/ui/experiments#top")
    assert client.get("/v1/experiments/points-q4", headers=auth("editor")).status_code == 404
    running(client, auth("editor"), ab_definition())
    started = editor.get("/ui/experiments/points-q4/delete")
    assert started.status_code == 409 and "only a draft can be deleted" in started.get_data(as_text=True)
    assert "Delete draft" not in editor.get("/ui/experiments/points-q4").get_data(as_text=True)
    assert as_role("analyst").get("/ui/experiments/points-q4/delete").status_code == 403


def test_a_nul_in_a_console_path_or_a_line_break_in_next_is_never_a_server_error(as_role, client, auth, keys):
    running(client, auth("editor"), ab_definition())
    editor = as_role("editor")
    for path in ("/ui/experiments/%00", "/ui/experiments/a%00b/results", "/ui/experiments/%00/results.csv", "/ui/experiments/%00/edit",
                 "/ui/experiments/%00/settings", "/ui/experiments/%00/start", "/ui/models/%00/activate", "/ui/models/%00/cancel"):
        resp = editor.get(path)
        assert resp.status_code == 404 and "There is no console page at this address" in resp.get_data(as_text=True), path
    fresh = client.application.test_client()
    token = csrf(fresh, "/ui/sign-in?next=/ui/experiments%0d%0aSet-Cookie:x=1")
    signed = fresh.post("/ui/sign-in?next=/ui/experiments%0d%0aSet-Cookie:x=1", data={"csrf_token": token, "api_key": keys["editor"]})
    assert signed.status_code == 303 and signed.headers["Location"].endswith("/ui/experiments") and "Set-Cookie:x" not in signed.headers["Location"]


def test_settings_errors_read_in_the_forms_words(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    editor = as_role("editor")
    token = csrf(editor, "/ui/experiments/points-q4/settings")
    page_ = editor.get("/ui/experiments/points-q4/settings").get_data(as_text=True)
    revision = re.search(r'name="revision" value="(\d+)"', page_).group(1)
    resp = editor.post("/ui/experiments/points-q4/settings", data={"csrf_token": token, "revision": revision, "name": "a\x00b", "traffic": "x"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "may not contain a NUL character" in html and "should match pattern" not in html and "Input should" not in html


def test_the_user_page_says_why_a_user_is_not_in_a_running_experiment(as_role, client, auth):
    editor, shop = auth("editor"), auth("storefront")
    rule = {"all": [{"attribute": "purchases", "op": "gte", "value": 1}, {"attribute": "country", "op": "eq", "value": "nl"}]}
    running(client, editor, ab_definition(key="buyers-nl", targeting=rule))
    running(client, editor, ab_definition(key="tiny", traffic=0.000001))
    running(client, editor, ab_definition(key="open"))
    post_ok(client, "/v1/events", {"events": [{"event_id": "v1", "user_id": "browser-only", "item_id": "i1", "type": "view"}]}, shop)
    html = as_role("analyst").get("/ui/users", query_string={"user_id": "browser-only"}).get_data(as_text=True)
    said = dict(re.findall(r'<li><a href="/ui/experiments/([^"]+)">[^<]+</a>(?: <span class="badge">\w+</span>)?: ([^<]+)\.</li>', html))
    assert "does not match what is stored" in said["buyers-nl"] and "country" in said["buyers-nl"]
    assert "traffic share" in said["tiny"] and said["open"] == "would be enrolled at their next assignment"
    assert "purchases 0 · revenue 0" in html
    # Nothing was recorded by looking: nobody is exposed until the storefront asks.
    assert sum(a["users"] for a in get_ok(client, "/v1/experiments/open/results", auth("analyst"))["arms"]) == 0
    assert get_ok(client, "/v1/experiments/open/assignment?user_id=browser-only", shop)["enrolled"] is True


def test_the_models_page_shows_a_tuned_runs_trials_and_its_best(as_role, client, auth):
    from tests.helpers import train, two_tribes

    two_tribes(client, auth("storefront"))
    tune = {"trials": 3, "metric": "precision_at_10", "space": {"factors": [4, 16]}, "seed": 7}
    done = train(client, auth("editor"), {"algorithm": "als", "params": {"iterations": 5, "regularization": 0.1}, "tune": tune})
    html = as_role("editor").get("/ui/models").get_data(as_text=True)
    best = max(t["metric"] for t in done["tuning"])
    assert f"tuned on precision@10: 3 trials, best {best:.4g}" in html and "the parameters above are the best trial's" in html
    trials = html.split("<summary>Trials", 1)[1].split("</details>", 1)[0]
    assert trials.count("<tr><td class=\"num\">") == 3 and all(f'"factors": {t["params"]["factors"]}' in trials for t in done["tuning"])


def test_a_parameter_given_twice_is_refused_not_read_as_its_first_value(as_role, client, auth):
    running(client, auth("editor"), ab_definition())
    twice = as_role("analyst").get("/ui/experiments/points-q4/results?alpha=0.05&alpha=0.5")
    assert twice.status_code == 422 and "alpha is given more than once" in twice.get_data(as_text=True)
    editor = as_role("editor")
    token = csrf(editor, "/ui/experiments/points-q4/pause")
    resp = editor.post("/ui/experiments/points-q4/pause", data={"csrf_token": token, "confirm": ["yes", "no"]})
    assert resp.status_code == 422 and get_ok(client, "/v1/experiments/points-q4", auth("editor"))["status"] == "running"


def test_a_nul_in_a_looked_up_user_id_is_named(as_role):
    resp = as_role("analyst").get("/ui/users", query_string={"user_id": "u\x001"})
    assert resp.status_code == 422 and "cannot contain a NUL character" in resp.get_data(as_text=True)


def test_second_review_details_of_the_new_pages(as_role, client, auth, keys):
    # A user id with a zero-width joiner survives sign-in's next; only control characters are dropped.
    fresh = client.application.test_client()
    token = csrf(fresh, "/ui/sign-in")
    signed = fresh.post("/ui/sign-in?next=/ui/users?user_id%3Da%E2%80%8Db", data={"csrf_token": token, "api_key": keys["analyst"]})
    assert signed.status_code == 303 and "/ui/users?user_id=a" in signed.headers["Location"]
    # An error on the at-risk form is tied to its input, and said in an alert.
    bad = as_role("analyst").get("/ui/users/at-risk", query_string={"idle_days": "-1"}).get_data(as_text=True)
    assert 'aria-describedby="f-idle_days-hint f-idle_days-error"' in bad and 'role="alert"' in bad
    assert as_role("analyst").get("/ui/users/at-risk.csv").headers["Cache-Control"] == "no-store"
    # A stopped experiment is not told to stop.
    running(client, auth("editor"), ab_definition())
    assert client.post("/v1/experiments/points-q4/stop", headers=auth("editor")).status_code == 200
    page_ = as_role("editor").get("/ui/experiments/points-q4/delete").get_data(as_text=True)
    assert "keeps its results for good" in page_ and "stop it instead" not in page_


def test_the_results_page_cuts_a_rate_lift_interval_at_minus_100_percent_and_marks_one_look_figures(as_role, client, auth):
    shop = auth("storefront")
    # About 15 users an arm, whatever the split: a control rate of one conversion sends the lift's
    # delta-method interval far below -100 %, and a sequence on 30 users is some ±1.5 wide.
    users = _two_arms(client, auth, 30, "cut")
    converted = users["control"][:1] + users["every5"][: len(users["every5"]) // 2]
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o-{u}", "experiment": "points-q4", "user_id": u, "metric": "conversion"} for u in converted]}, shop)
    every5 = {a["arm"]: a for a in get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["arms"]}["every5"]
    assert every5["lift_ci"][0] < -1  # the API gives the contract's formula as computed
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    row = html.split('<th scope="row">every5', 1)[1].split("</tr>", 1)[0]
    assert f"[-100.0%, {every5['lift_ci'][1]:+.1%}]" in row
    assert "a lift below −100 %" in html and "(one look)" not in html
    sequential = as_role("analyst").get("/ui/experiments/points-q4/results?sequential=true").get_data(as_text=True)
    assert "(one look)" in sequential and "Sequential intervals are on" in sequential
    # The confidence sequence of a difference of rates reaches past +100 points: cut there.
    wide = {a["arm"]: a for a in get_ok(client, "/v1/experiments/points-q4/results?sequential=true", auth("analyst"))["arms"]}["every5"]
    assert wide["diff_ci"][1] > 1
    row = sequential.split('<th scope="row">every5', 1)[1].split("</tr>", 1)[0]
    assert f"[{max(wide['diff_ci'][0], -1) * 100:+.1f} pp, +100.0 pp]" in row and "a difference of rates beyond ±100 pp" in sequential


def test_retention_curves_stop_where_an_arm_has_few_users_old_enough(as_role, client, auth):
    running(client, auth("editor"), ab_definition(weights=(1, 1, 0.000001)))
    three_days_ago = time.time() - 3 * 86_400
    stamp = datetime.fromtimestamp(three_days_ago, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for u in range(12):
        assign(client, auth("storefront"), "points-q4", f"old{u}", timestamp=stamp)
    page = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    assert "No arm has 20 exposed users whose first day has ended yet." in page
    for u in range(12, 80):
        assign(client, auth("storefront"), "points-q4", f"old{u}", timestamp=stamp)
    page = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    assert "A day is drawn for an arm once at least 20 of its users are old enough for it; no arm has that many past day 2 yet." in page


def test_the_user_page_shows_points_and_values_as_stored_and_arms_without_a_schedule_grant_none(as_role, client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(weights=(1, 0.000001, 0.000001)))  # everyone in control: 1 point per unit
    assign(client, shop, "points-q4", "u-cents")
    post_ok(client, "/v1/rewards", {"action_id": "a-1", "user_id": "u-cents", "experiment": "points-q4", "action": "purchase", "value": 150.46}, shop)
    plain = {"key": "banner", "name": "Banner", "arms": [{"key": "control"}, {"key": "blue"}], "metrics": [{"key": "conversion"}], "primary_metric": "conversion"}
    running(client, auth("editor"), plain)
    assign(client, shop, "banner", "u-cents")
    page = as_role("analyst").get("/ui/users", query_string={"user_id": "u-cents"}).get_data(as_text=True)
    assert "points-q4: balance 150.46 points" in page and '<td class="num">150.46</td>' in page
    banner = page.split("<h4>banner:", 1)[1].split("</h4>", 1)[0]
    assert "the user's arm grants no points (it has no reward schedule)" in banner and "balance" not in banner


def test_the_user_page_shows_the_newest_twenty_reward_actions_newest_first(as_role, client, auth):
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(weights=(1, 0.000001, 0.000001)))
    assign(client, shop, "points-q4", "u-busy")
    for i in range(25):
        post_ok(client, "/v1/rewards", {"action_id": f"a-{i:02}", "user_id": "u-busy", "experiment": "points-q4", "value": 1}, shop)
    page = as_role("analyst").get("/ui/users", query_string={"user_id": "u-busy"}).get_data(as_text=True)
    assert re.findall(r"<code>(a-\d\d)</code>", page) == [f"a-{i:02}" for i in range(24, 4, -1)]
    assert "points-q4: balance 25 points" in page  # the balance is the whole ledger's
    assert "the newest 20 entries below" in page  # so that nobody adds the rows up to the balance and finds them short
    assign(client, shop, "points-q4", "u-twenty")
    for i in range(20):  # the whole ledger fits: nothing is left out, and the page does not say so
        post_ok(client, "/v1/rewards", {"action_id": f"t-{i:02}", "user_id": "u-twenty", "experiment": "points-q4", "value": 1}, shop)
    page = as_role("analyst").get("/ui/users", query_string={"user_id": "u-twenty"}).get_data(as_text=True)
    assert "points-q4: balance 20 points" in page and len(re.findall(r"<code>t-\d\d</code>", page)) == 20 and "entries below" not in page


def test_a_bandit_s_ipw_rate_interval_is_shown_from_zero_but_never_capped_at_100_percent(as_role, client, auth):
    from experiments.stats.ipw import PropensitySums, ipw_arm

    shop = auth("storefront")
    running(client, auth("editor"), bandit_definition(arms=2))
    users = [(u, assign(client, shop, "bonus-bandit", f"ipw{u}")) for u in range(40)]
    converted = [f"ipw{u}" for u, a in users if a["arm"] == "arm0"][:2]
    post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"o-{u}", "experiment": "bonus-bandit", "user_id": u, "metric": "conversion"} for u in converted]}, shop)
    arms = {a["arm"]: a for a in get_ok(client, "/v1/experiments/bonus-bandit/results", auth("analyst"))["arms"]}
    assert arms["arm0"]["ipw_ci"][0] < 0  # two conversions: the normal interval reaches below 0
    html = as_role("analyst").get("/ui/experiments/bonus-bandit/results").get_data(as_text=True)
    row = html.split('<th scope="row">arm0', 1)[1].split("</tr>", 1)[0]
    assert f"[0.0%, {arms['arm0']['ipw_ci'][1]:.1%}]" in row and "an IPW rate below 0 %" in html
    # The self-normalised rate, a weighted mean of 0s and 1s, is cut at 0 % too, as on the what-if page.
    assert arms["arm0"]["snipw_ci"][0] < 0 and f"[0.0%, {arms['arm0']['snipw_ci'][1]:.1%}]" in row and "a self-normalised rate outside 0 to 100 %" in html
    # An IPW estimate is a weighted sum, not a share: it can pass 1, and its interval is not cut there.
    assert ipw_arm(PropensitySums.of_values([0.5, 0.5, 0.9], [1.0, 1.0, 0.0]), 3, 0.05).ipw_mean > 1


def test_the_models_page_shows_a_tuned_versions_parameters_as_pairs_that_wrap(as_role, client, auth):
    from service.http.console import formatting as fmt

    two_tribes(client, auth("storefront"))
    tune = {"trials": 2, "space": {"regularization": [0.01, 1.0, "log"]}, "seed": 7}
    done = train(client, auth("editor"), {"algorithm": "als", "params": {"iterations": 3, "factors": 4}, "tune": tune, "activate": False})
    html = as_role("editor").get("/ui/models").get_data(as_text=True)
    row = html.split(f"<code>{done['version']}</code>", 1)[1].split("</tr>", 1)[0]
    regularization = done["params"]["regularization"]
    assert f"<code>regularization&nbsp;{fmt.num(regularization)}</code>" in row and "<code>factors&nbsp;4</code>, " in row
    assert f"{regularization}" in row  # the exact value, in the title


def test_a_charts_ticks_name_their_gridlines_exactly():
    from service.http.console.charts import Series, line_chart

    # Rates from 20 % to 32.4 %: gridlines every 2.5 %, once labelled "22%", "25%", "28%"...
    svg = str(line_chart("rates", ["12-04", "12-05"], [Series("control", [0.2, 0.324])], y_format=lambda v: f"{v:.1%}", percent=True))
    assert [t for t in ("20%", "22.5%", "25%", "27.5%", "30%", "32.5%") if f">{t}</text>" in svg] == ["20%", "22.5%", "25%", "27.5%", "30%", "32.5%"]
    assert "last values: control 32.4%" in svg
    assert "1 point, 12-05" in str(line_chart("one day", ["12-05"], [Series("control", [0.5])]))
    # A retention curve ends where no user is old enough yet: its last value says which day it is of.
    ended = str(line_chart("days", ["1", "2", "3"], [Series("control", [0.5, 0.4, None]), Series("t", [0.5, 0.4, 0.3])], y_format=lambda v: f"{v:.1%}"))
    assert "3 points from 1 to 3; last values: control 40.0% at 2, t 30.0%" in ended
    # The forest plot's axis too: 12.5 pp had read "+12 pp", 1,000 "+1e+03".
    from service.http.console import formatting as fmt
    from service.http.console.chart_ticks import pp_tick, signed_tick
    from service.http.console.charts import Interval, forest_plot

    def differences(kind):
        return lambda v: fmt.difference(v, kind)

    rates = str(forest_plot("d", [Interval("every5", 0.06, 0.0, 0.12)], x_format=differences("binary"), tick_format=pp_tick))
    assert all(f">{t}</text>" in rates for t in ("0 pp", "+2.5 pp", "+7.5 pp", "+12.5 pp"))
    # What a screen reader reads of it gives the table's figures: +11.2 pp had read "+11 pp".
    assert "+11.2 pp [+4.6 pp, +17.8 pp]" in str(forest_plot("d", [Interval("every5", 0.112, 0.046, 0.178)], x_format=differences("binary"), tick_format=pp_tick))
    means = str(forest_plot("d", [Interval("b", 600, -200, 1300)], x_format=differences("continuous"), tick_format=signed_tick))
    assert all(f">{t}</text>" in means for t in ("-500", "0", "+1000", "+1500"))


def test_a_line_chart_carries_every_figure_as_a_table_and_a_lone_point_its_series_shape():
    from service.http.console.charts import Series, line_chart

    # The description gives the last values; the days before them, with each band, are in a table under the chart.
    chart = str(line_chart("diff <by day>", ["12-04", "12-05"], [Series("b", [0.01, -0.02], band=[None, (-0.05, 0.01)])], y_format=lambda v: f"{v:+.1%}", x_name="Day"))
    assert 'aria-labelledby="chart-' in chart and 'aria-describedby="chart-' in chart and "every figure is in the table under the chart" in chart
    table = chart.split("</svg>", 1)[1]
    assert table.startswith('<details class="chart-data">') and '<th scope="col">Day</th>' in table and "diff &lt;by day&gt;" in table
    assert '<th scope="row">12-04</th><td class="num">+1.0%</td>' in table and "-2.0%" in table and "[-5.0%, +1.0%]" in table
    # One day of data has no line, so no dash to tell the series apart: each draws its own shape, in the legend too.
    one_day = str(line_chart("one day", ["12-05"], [Series("a", [0.3]), Series("b", [0.4])]))
    assert one_day.count("<circle") == 2 and one_day.count("<rect") == 2


def test_a_confidence_sequence_s_wide_first_days_do_not_set_the_chart_s_range():
    from service.http.console.chart_ticks import pp_tick
    from service.http.console.charts import Series, line_chart

    days = [str(d) for d in range(1, 9)]
    band = [(-0.9, 0.95), (-0.5, 0.6), (-0.08, 0.12), (-0.05, 0.09), (-0.04, 0.08), (-0.03, 0.07), (-0.02, 0.06), (-0.01, 0.05)]
    series = [Series("b", [0.02] * 8, band=band)]
    whole = str(line_chart("d", days, series, zero=True, tick_format=pp_tick))
    reached = str(line_chart("d", days, series, zero=True, tick_format=pp_tick, band_reach=4.0))
    ticks = [re.findall(r'text-anchor="end" fill="[^"]+">([-+]?\d+ pp)</text>', chart) for chart in (whole, reached)]
    assert ticks == [["-100 pp", "-50 pp", "0 pp", "+50 pp", "+100 pp"], ["-10 pp", "-5 pp", "0 pp", "+5 pp", "+10 pp", "+15 pp"]]
    points = [float(xy.split(",")[1]) for xy in re.search(r'<polygon points="([^"]+)"', reached).group(1).split()]
    assert min(points) >= 16 - 0.05 and max(points) <= 280 - 44 + 0.05  # cut at the plot's edges, not drawn past them
    assert "[-0.9, 0.95]" in reached  # the table keeps them whole


def test_the_user_page_says_whether_older_events_are_left_out(as_role, client, auth):
    shop = auth("storefront")
    events = [{"event_id": f"e{i}", "user_id": "few" if i < 3 else "many", "item_id": "i1", "type": "view"} for i in range(3 + 51)]
    post_ok(client, "/v1/events", {"events": events}, shop)
    analyst = as_role("analyst")
    assert "(all 3)" in analyst.get("/ui/users", query_string={"user_id": "few"}).get_data(as_text=True)
    many = analyst.get("/ui/users", query_string={"user_id": "many"}).get_data(as_text=True)
    assert "(the newest 50)" in many and many.count("<td>view</td>") == 50


def test_an_experiment_keyed_new_opens_like_any_other(as_role, client, auth):
    running(client, auth("editor"), ab_definition(key="new"))
    page = as_role("analyst").get("/ui/experiments/new")
    assert page.status_code == 200 and "Q4 points" in page.get_data(as_text=True) and "running" in page.get_data(as_text=True)
    assert 'href="/ui/experiments/new"' in as_role("analyst").get("/ui/experiments").get_data(as_text=True)


def test_amounts_and_their_sums_read_to_the_digits_a_double_holds():
    from service.http.console.formatting import amount

    # A revenue summed from 9.46 + 18.92 is 28.380000000000003 as a double; a ledger row keeps its cents.
    assert [amount(v) for v in (9.46 + 18.92, 0.1 + 0.2, 150.46, 1234567.25, -0.30000000000000004, 2.5e-7)] == [
        "28.38", "0.3", "150.46", "1,234,567.25", "-0.3", "2.5e-07"]
    # From 1e15 on, every digit a double has is shown as stored (points balances can grow that large).
    assert [amount(v) for v in (2.0**53, 12345678901234568.0, 1e15 + 0.5)] == ["9,007,199,254,740,992", "12,345,678,901,234,568", "1,000,000,000,000,000.5"]


def test_figures_with_more_digits_than_shown_read_as_whole_numbers_not_exponents():
    from service.http.console.formatting import difference, num

    # A mean revenue of 12,345.6 had read "1.235e+04", a training of 1,234.5 s "1.23e+03 s".
    assert [num(v) for v in (12345.6, 9999.6, -54321.2, 1234.5, 12.43, 1.2345e-05)] == ["12,346", "10,000", "-54,321", "1,234", "12.43", "1.234e-05"]
    assert num(1234.5, 3) == "1,234" and difference(12345.6, "number") == "+12,346"


def test_arms_that_serve_the_active_model_say_which_and_activating_another_warns_of_them(as_role, client, auth):
    # Activating a version silently changed what a running recommender experiment's control served.
    from tests.helpers import train, two_tribes

    two_tribes(client, auth("storefront"))
    served = train(client, auth("editor"), {"algorithm": "item_knn"})["version"]
    other = train(client, auth("editor"), {"algorithm": "item_knn", "activate": False})["version"]
    arms = [{"key": "control"}, {"key": "pinned", "payload": {"recommender": {"model_version": served}}},
            {"key": "pop", "payload": {"recommender": {"algorithm": "popularity"}}}]
    running(client, auth("editor"), {"key": "recs", "name": "Recommenders", "arms": arms, "metrics": [{"key": "clicked"}]})
    editor = as_role("editor")
    page = editor.get("/ui/experiments/recs").get_data(as_text=True)
    # Each version with its algorithm: an id alone cannot show an arm given the wrong model.
    assert f"<td>the active model (currently item_knn model {served})</td>" in page and f"<td>item_knn model {served}</td>" in page
    assert f"<td>the most popular items, as the active model counts them (currently item_knn model {served})</td>" in page
    results = as_role("analyst").get("/ui/experiments/recs/results").get_data(as_text=True)  # the analyst's page says it too
    assert f"<strong>pinned</strong>: item_knn model {served};" in results
    assert f"<strong>control</strong>: the active model (currently item_knn model {served});" in results
    warning = as_role("editor").get(f"/ui/models/{other}/activate").get_data(as_text=True)
    assert f"those arms will serve {other} instead" in warning and "recs</a> (control; pop, popular items)." in warning
    running(client, auth("editor"), ab_definition())  # reward schedules alone: no recommender arms to warn of
    assert "points-q4" not in editor.get(f"/ui/models/{other}/activate").get_data(as_text=True)


def test_a_guardrail_status_on_a_handful_of_conversions_shows_with_its_note(as_role, client, auth):
    """The badge is the status (a note on thin arms qualifies it; "no evidence yet" is for a guardrail without an interval)."""
    no_conversions_in_every5(client, auth("editor"), auth("storefront"))
    status = get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["guardrails"][0]["status"]
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    guardrail = re.search(r'<li><span class="badge[^"]*">([^<]+)</span> every5 on purchase_conversion[^<]*<span class="muted">\(([^)]+)\)', html)
    assert guardrail and guardrail.group(1) == status and "this arm has 0 conversions of" in guardrail.group(2)  # the control may be thin too


def test_a_guardrail_that_leans_worse_without_an_interval_shows_its_warn(as_role, client, auth):
    """An arm of one user has a difference but no interval: the API says warn, and so does the badge (it had said
    "no evidence yet", which is for a guardrail the API calls ok for want of an interval)."""
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(weights=(1, 1, 0.000001), guardrails=["spend"]))
    arms: dict[str, list[str]] = {"control": [], "every5": []}
    u = 0
    while not arms["every5"] or len(arms["control"]) < 2:
        arms.setdefault(assign(client, shop, "points-q4", f"s{u}")["arm"], []).append(f"s{u}")
        u += 1
    outcomes = [{"outcome_id": f"o-{user}", "experiment": "points-q4", "user_id": user, "metric": "spend", "value": (1.0 if arm == "every5" else 3.0 + i)}
                for arm, users in arms.items() for i, user in enumerate(users)]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    api = get_ok(client, "/v1/experiments/points-q4/results", auth("analyst"))["guardrails"]
    assert len(arms["every5"]) == 1 and [(g["status"], g["diff_ci"]) for g in api if g["arm"] == "every5"] == [("warn", None)]
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    badges = dict((arm, badge) for badge, arm in re.findall(r'<li><span class="badge[^"]*">([^<]+)</span> (\w+) on spend', html))
    assert badges == {"every5": "warn", "lottery": "no evidence yet"}  # lottery has nobody yet: the API's "ok" for want of an interval


def test_the_cost_of_an_arm_whose_schedule_has_granted_nothing_yet_is_not_known_on_every_reading(as_role, client, auth):
    """every5 pays on a user's 5th action: after one it has granted 0 points, so the contract's cost is negative
    (better and cheaper) while the arm owes what its users are working towards. The API says so in the arm's
    notes, the CSV carries them, and the console's summary and table agree."""
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition(weights=(1, 1, 0.000001)))
    arms: dict[str, list[str]] = {"control": [], "every5": []}
    for u in range(40):
        arms[assign(client, shop, "points-q4", f"p{u}")["arm"]].append(f"p{u}")
    outcomes = [{"outcome_id": f"o-{user}", "experiment": "points-q4", "user_id": user, "metric": "spend", "value": (30.0 if arm == "every5" else 10.0) + i % 3}
                for arm, users in arms.items() for i, user in enumerate(users)]
    post_ok(client, "/v1/outcomes", {"outcomes": outcomes}, shop)
    for arm in arms:
        post_ok(client, "/v1/rewards", {"action_id": f"r-{arm}", "user_id": arms[arm][0], "experiment": "points-q4", "value": 10.0}, shop)
    answer = get_ok(client, "/v1/experiments/points-q4/results?metric=spend", auth("analyst"))
    every5 = next(a for a in answer["arms"] if a["arm"] == "every5")
    assert every5["significant"] and every5["points_per_user"] == 0 and every5["cost_per_incremental"] < 0
    assert results.UNPAID in every5["notes"] and results.UNPAID not in answer["arms"][0]["notes"]
    csv_text = client.get("/v1/experiments/points-q4/results.csv?metric=spend", headers=auth("analyst")).get_data(as_text=True)
    assert results.UNPAID in next(r for r in csv_module.DictReader(io.StringIO(csv_text)) if r["arm"] == "every5")["notes"]
    html = as_role("analyst").get("/ui/experiments/points-q4/results?metric=spend").get_data(as_text=True)
    row = html.split('<th scope="row">every5', 1)[1].split("</tr>", 1)[0]
    assert "not known yet" in row and "What it costs is not known yet: every5 recorded reward actions but granted no points so far" in html


def test_a_series_that_starts_before_the_experiment_says_why(as_role, client, auth):
    """An exposure logged late is stored at the time the storefront sent, also before the start: the chart then
    starts earlier, and the page says so rather than leaving a week before "Started" unexplained."""
    shop = auth("storefront")
    running(client, auth("editor"), ab_definition())
    assign(client, shop, "points-q4", "late", timestamp=iso(time.time() - 7 * 86400))
    assign(client, shop, "points-q4", "now")
    html = as_role("analyst").get("/ui/experiments/points-q4/results").get_data(as_text=True)
    started = client.get("/v1/experiments/points-q4", headers=auth("analyst")).get_json()["started_at"][:10]
    assert f"before the experiment started ({started}): the storefront sent exposures dated then" in html
    running(client, auth("editor"), ab_definition(key="on-time"))
    assign(client, shop, "on-time", "u1")
    assert "before the experiment started" not in as_role("analyst").get("/ui/experiments/on-time/results").get_data(as_text=True)


def test_an_outage_is_told_as_the_api_tells_it_without_the_database_s_address(tmp_path, caplog):
    import logging

    from service.config import Config
    from service.http import errors
    from service.http.app import create_app

    errors._said.clear()
    down = create_app(Config(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", model_dir=tmp_path, testing=True, secret_key="k" * 32))
    client = down.test_client()
    with caplog.at_level(logging.WARNING, logger="service.http.errors"):
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/sign-in").get_data(as_text=True)).group(1)
        answer = client.post("/ui/sign-in", data={"csrf_token": token, "api_key": "sl_anything"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert errors.UNAVAILABLE in page and "127.0.0.1" not in page and "port 1" not in page  # the driver's words stay in the log
    assert [r.getMessage() for r in caplog.records] == ["dependency unavailable"] and "127.0.0.1" in caplog.records[0].error


def test_a_bandit_with_no_floor_reads_as_comparing_no_arm_without_bias(as_role, client, auth):
    running(client, auth("editor"), bandit_definition(arms=2, bandit={"algorithm": "ucb1", "min_probability": 0}))
    shop = auth("storefront")
    for u in range(20):
        assign(client, shop, "bonus-bandit", f"z{u}")
        post_ok(client, "/v1/outcomes", {"outcomes": [{"outcome_id": f"z-{u}", "experiment": "bonus-bandit", "user_id": f"z{u}", "metric": "conversion"}]}, shop)
    html = as_role("analyst").get("/ui/experiments/bonus-bandit/results").get_data(as_text=True)
    reading = html.split('id="reading-title"', 1)[1].split("</section>", 1)[0]
    assert "floor (min_probability) is 0" in reading and "compare arms by their IPW" not in reading and " leads on " not in reading
    assert "effective users" not in html  # no badge or notice of intervals that are not there
