"""The console's session: sign-in with an API key, a CSRF token per session, and each page's role check.

The signed session cookie holds a random session token and the CSRF token, never the key: the
database holds whose key a token signs in (`usecases.console_sessions`), and every page reads it
again, so a revoked key, a sign-out (in any tab or browser holding a copy) and the session's 8 hours
end it at once. A long form posted without a usable session goes through the sign-in page and comes
back as typed (`kept_form`).
"""
from __future__ import annotations

import hmac
import re
import secrets
from functools import wraps
from typing import Any, Callable
from urllib.parse import unquote

from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from service.http.endpoint import services
from service.usecases import console_sessions
from service.usecases.keys import Principal, a_key_of, allowed, roles_needed

SESSION = "session"
# What cookies from releases before 2026-12-06 held: read only to be dropped.
OLD_API_KEY = "api_key"
CSRF = "csrf"
CSRF_FIELD = "csrf_token"


def csrf_token() -> str:
    """This session's CSRF token, created on first use (the sign-in form needs one too)."""
    token = session.get(CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF] = token
    return token


STALE_FORM = (
    "Nothing was saved: your console session changed after this page was loaded (a sign-in in another tab, "
    "for example). The form is as you left it; check it and save again."
)
RESUMED = "Nothing is saved yet: you signed in again, and the form is as you typed it. Check it and save."
# A long form posted without a session of the right role goes to sign-in with its fields under this prefix,
# and comes back from there, marked RESUMED_FIELD, to be shown as typed.
KEPT_PREFIX = "kept:"
RESUMED_FIELD = "resumed"


def _csrf_ok() -> bool:
    sent, expected = request.form.get(CSRF_FIELD, ""), session.get(CSRF)
    return isinstance(expected, str) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def check_csrf() -> None:
    """Refuse a POST whose form does not carry this session's token (403)."""
    if not _csrf_ok():
        abort(403, "This form did not come from your console session (its security token is missing or out of date). Reload the page and try again.")


# What a pasted line may carry around the key: `export EDITOR_KEY=sl_...` as `make run` prints it, or an
# `Authorization: Bearer sl_...` header.
_AROUND_KEY = re.compile(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=|^(?:authorization:\s*)?bearer\s+", re.IGNORECASE)


def posted_key() -> str:
    """The API key the sign-in form carries, less what a pasted shell line or header put around it."""
    return _AROUND_KEY.sub("", request.form.get("api_key", "").strip(), count=1).strip().strip("'\"")


def sign_in_posted_again() -> Principal | None:
    """Who is signed in, when this POST to the sign-in page is the sign-in that did it, sent again: reloading the
    page a sign-in answered repeats its post, from this console's page, with the key it signed in and the token
    it replaced. Any token not the session's counts as such: naming the session's own key proves more than a
    token would. None for anything else (another key typed on an out-of-date page is refused as before)."""
    if _csrf_ok() or not _same_origin():
        return None
    signed_in = current_principal()
    raw = posted_key()
    posted = services().keys.principal(raw) if raw else None
    return signed_in if signed_in is not None and posted is not None and posted.key_id == signed_in.key_id else None


def _same_origin() -> bool:
    """Whether the browser says the POST came from one of this console's own pages (Origin, else Referer)."""
    origin = request.headers.get("Origin") or request.headers.get("Referer") or ""
    own = request.host_url.rstrip("/")
    return origin == own or origin.startswith(own + "/")


def kept_form() -> tuple[str, int] | None:
    """Why this POST of a long form is to be shown again as typed, not saved, and with what status; None to save it (see `page`)."""
    if g.get("stale_form"):
        return STALE_FORM, 409
    if request.method == "POST" and request.form.get(RESUMED_FIELD):
        return RESUMED, 200
    return None


def typed_fields() -> dict[str, str]:
    """A posted form's own fields: without the token and the mark of a form brought back from sign-in."""
    return {k: v for k, v in request.form.to_dict().items() if k not in (CSRF_FIELD, RESUMED_FIELD)}


def to_keep(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A form's fields as the sign-in page holds them (under KEPT_PREFIX), for `kept_fields` to read back."""
    return [(KEPT_PREFIX + name, value) for name, value in fields]


def _to_sign_in(notice: str, status: int) -> tuple[str, int]:
    """The sign-in page, holding what this long form's post carried, to bring it back after the sign-in."""
    kept = to_keep([(name, value) for name, values in request.form.lists() if name not in (CSRF_FIELD, RESUMED_FIELD) for value in values])
    return render_template("console/sign_in.html", next=request.path, error=None, notice=notice, kept=kept), status


def keeps_forms(target: str) -> bool:
    """Whether a POST to this console path reaches a long form, the only kind the sign-in page brings a form back to."""
    try:
        endpoint, _ = current_app.url_map.bind("localhost").match(target.split("?", 1)[0], method="POST")
    except HTTPException:
        return False
    return bool(getattr(current_app.view_functions.get(endpoint), "keeps_forms", False))


def kept_fields() -> list[tuple[str, str]]:
    """The fields a sign-in carries for a long form, under their own names."""
    return [(name[len(KEPT_PREFIX):], value) for name, values in request.form.lists() if name.startswith(KEPT_PREFIX) for value in values]


def sign_in(raw: str) -> Principal | None:
    """Start a session when the key is valid; None when it is unknown or revoked."""
    svc = services()
    started = console_sessions.sign_in(svc.db, svc.keys, raw.strip())
    if started is None:
        return None
    token, principal = started
    ended = session.get(SESSION)
    if isinstance(ended, str) and ended:  # signing in again over a session ends it, as signing out would
        console_sessions.sign_out(svc.db, ended)
    session.clear()
    session[SESSION] = token
    # A fresh token at sign-in, so that a token planted before it is worthless afterwards.
    session[CSRF] = secrets.token_urlsafe(32)
    session.permanent = True
    return principal


def sign_out() -> None:
    """End the session on the server (a copy of the cookie signs nobody in) and clear the cookie."""
    token = session.get(SESSION)
    if isinstance(token, str) and token:
        console_sessions.sign_out(services().db, token)
    session.clear()


def current_principal() -> Principal | None:
    """Who is signed in, read again now; None when nobody is, or the session ended (signed out, expired, key revoked)."""
    old_key = session.pop(OLD_API_KEY, None)
    if isinstance(old_key, str) and old_key:
        # A cookie from the release before server-held sessions: its key starts one, once, and leaves the cookie.
        svc = services()
        started = console_sessions.sign_in(svc.db, svc.keys, old_key)
        if started is None:
            g.session_ended = True
            return None
        session[SESSION] = started[0]
        return started[1]
    token = session.get(SESSION)
    if not isinstance(token, str) or not token:
        return None
    principal = console_sessions.principal(services().db, token)
    if principal is None:
        session.pop(SESSION, None)
        g.session_ended = True  # a page load says why it went to sign-in, as a form post does
    return principal


_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def safe_next(target: str | None) -> str | None:
    """A console path to return to after sign-in; anything else (another host, `//evil`) is dropped."""
    # A control character or line separator would end up in the redirect's Location header, which refuses it.
    # A fragment too: the console never sends one, and `/ui/..#x` hides a dot segment from the check below.
    if not target or not (target == "/ui" or target.startswith(("/ui/", "/ui?"))) or "\\" in target or "#" in target or _BREAKS.search(target):
        return None
    # A dot segment, plain or escaped (/ui/../v1, /ui/%2e%2e/v1, /ui/..%2fv1), would leave the console once the browser resolves it.
    if any(segment in (".", "..") for segment in unquote(target.split("?", 1)[0]).split("/")):
        return None
    return target


def page(roles: tuple[str, ...] | None, refills: bool = False, stale_token_ok: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Guard a page: CSRF on every POST, a signed-in key, and the role the matching API endpoint needs (None: any role).

    A `refills` page (a long form) whose POST carries an out-of-date token, from one of the console's
    own pages and a session still signed in with the right role, is handed to its view with
    `kept_form()` saying so: the view saves nothing and shows the form again, as it was, with a fresh
    token, rather than losing what was typed to a 403. Posted from the console's own pages without a
    session, or with one of a role the page does not admit, its fields go to the sign-in page, which
    brings them back after the sign-in. A POST from anywhere else is refused as always.
    `stale_token_ok`: a POST with an out-of-date token from the console's own pages goes on (sign-out).
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        def view(**kwargs: Any) -> Any:
            g.stale_form = False
            # Known before any refusal, so that a 403 page keeps the signed-in user's navigation and Sign out.
            g.principal = principal = current_principal()
            if request.method == "POST" and not _csrf_ok():
                _stale_token(lenient=refills or stale_token_ok or principal is None)
            _refuse_malformed(kwargs, refills)
            if principal is None:
                return _not_signed_in(refills)
            if roles is not None and not allowed(principal.role, roles):
                return _wrong_role(principal, roles, refills)
            return fn(**kwargs)

        view.keeps_forms = refills  # type: ignore[attr-defined]  # read by `keeps_forms`
        return view

    return decorate


def _stale_token(lenient: bool) -> None:
    """A POST without this session's token: refused (403), or, if `lenient` and from this console's own pages, marked stale."""
    # Without a session there is nothing a forged post could do: from this console's own
    # pages it goes to sign-in, which says why, like any form whose session ended.
    if not (lenient and _same_origin()):
        check_csrf()
    g.stale_form = True


def _refuse_malformed(kwargs: dict[str, Any], refills: bool) -> None:
    """Refuse what no console link or form sends: a form back from sign-in to a page without one, an unprintable path, a name given twice."""
    if request.method == "POST" and request.form.get(RESUMED_FIELD) and not refills:
        abort(400, "Only a long form comes back through the sign-in page; this page takes no such post.")
    # A path no page can name (a NUL, which the database would refuse to compare) is not found, as a
    # mistyped address is; the API answers such paths with a 422 of its own.
    if any(isinstance(v, str) and not v.isprintable() for v in kwargs.values()):
        abort(404, "There is no console page at this address. Check it, or start again from the experiments list.")
    # The first of two values would win without a word (confirm=yes&confirm=no paused an experiment), as the API refuses too.
    sent = [*request.args.lists(), *(request.form.lists() if request.method == "POST" else [])]
    repeated = sorted({name for name, values in sent if len(values) > 1})
    if repeated:
        abort(422, f"{', '.join(repeated)} {'is' if len(repeated) == 1 else 'are'} given more than once; the console's links and forms send each once.")


def _not_signed_in(refills: bool) -> tuple[str, int] | Response:
    """Where a request without a session goes: to sign-in, saying why, and back to the page (a long form's post with its fields)."""
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    if request.method == "GET" and g.get("session_ended"):
        flash("Your console session ended: you signed out (perhaps in another tab), its key was revoked, or its 8 hours passed. Sign in again to go back to the page.", "warn")
    if request.method == "POST" and refills and _same_origin():
        # A long form keeps its typing through the sign-in (from this console's own pages only: a
        # form filled in elsewhere is not one to bring back).
        return _to_sign_in("Your console session ended (you signed out, perhaps in another tab; its key was revoked; or the "
                           "session expired). The form is kept, not saved: sign in again to get it back as you typed it.", 401)
    if request.method == "POST" and request.endpoint != "console.sign_out_page":
        # The key was revoked or the session expired while the page was open: say why the
        # form went, and lead back to the page it was on.
        flash("Your console session ended (you signed out, perhaps in another tab; its key was revoked; or the session expired), so that form was not saved. "
              "Sign in again to go back to the page.", "warn")
        target = request.path
    return redirect(url_for("console.sign_in", next=target), 303)


def _wrong_role(principal: Principal, roles: tuple[str, ...], refills: bool) -> tuple[str, int]:
    """A signed-in key without the page's role: refused (403), a long form's post kept through a sign-in with another key."""
    if request.method == "POST" and refills and _same_origin():
        return _to_sign_in(f"This form needs {roles_needed(roles)}, but the console is now signed in with {a_key_of(principal.role)} "
                           "(perhaps in another tab). The form is kept, not saved: sign in with such a key to get it back as you typed it.", 403)
    abort(403, f"{a_key_of(principal.role).capitalize()} cannot use this page; it needs {roles_needed(roles)}.")


def can(roles: tuple[str, ...]) -> bool:
    """Whether the signed-in key may use pages open to `roles` (templates hide what it may not)."""
    principal: Principal | None = g.get("principal")
    return principal is not None and allowed(principal.role, roles)


def back(endpoint: str, **values: Any) -> Response:
    """Redirect after a successful POST (303, so that a reload does not post again).

    To "#top", which HTML reads as the top of the page: a redirect without a fragment keeps the one
    the form's address had, and an error summary's link to a field (#f-arms-1-...) would follow the
    user to a page that has no such field.
    """
    return redirect(url_for(endpoint, _anchor="top", **values), 303)


def back_with_query(endpoint: str, **values: Any) -> Response:
    """To a page with this request's query string (303): a CSV link whose settings cannot be used goes to the
    page that shows what is wrong beside each field, instead of to an error page."""
    sent = request.query_string.decode("latin-1")  # as sent: repeated names and any name (key=, _external=) kept
    return redirect(url_for(endpoint, **values) + (f"?{sent}" if sent else ""), 303)
