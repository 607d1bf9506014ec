"""Signing in and out with an API key, the console's front door, and the API reference."""
from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from service.http.console import bp
from service.http.console.session import (
    RESUMED_FIELD,
    back,
    check_csrf,
    current_principal,
    keeps_forms,
    kept_fields,
    page,
    posted_key,
    safe_next,
    sign_in,
    sign_in_posted_again,
    sign_out,
    to_keep,
)
from service.http.endpoint import READ_EXPERIMENTS
from service.text import bidi_escaped
from service.usecases.keys import allowed


def _home(role: str) -> str:
    """Where a role starts: the experiments for the people who read them, the API reference for the others."""
    return url_for("console.experiment_list") if allowed(role, READ_EXPERIMENTS) else url_for("console.docs")


@bp.get("/")
def index() -> Any:
    """Send a visitor to their start page, or to sign in."""
    principal = current_principal()
    return redirect(_home(principal.role) if principal else url_for("console.sign_in"), 303)


@bp.route("/sign-in", methods=["GET", "POST"], endpoint="sign_in")
def sign_in_page() -> Any:
    """Sign in with an API key of any role."""
    target = safe_next(request.values.get("next"))
    if request.method == "POST":
        kept = kept_fields()
        signed_in = sign_in_posted_again()
        if signed_in is not None:  # a reload: that page again, not a second sign-in
            return _after_sign_in(signed_in.role, target, kept)
        check_csrf()
        principal = sign_in(posted_key())
        if principal is not None:
            flash(f"Signed in with the {principal.role} key “{bidi_escaped(principal.name)}”.", "success")
            return _after_sign_in(principal.role, target, kept)
        return render_template("console/sign_in.html", next=target, error="That key is unknown or has been revoked.", kept=to_keep(kept)), 401
    return render_template("console/sign_in.html", next=target, error=None)


def _after_sign_in(role: str, target: str | None, kept: list[tuple[str, str]]) -> Any:
    """Where a sign-in leads: back to a long form posted when its session had ended, as typed, by one more post; else onwards."""
    if kept and target and keeps_forms(target):
        return render_template("console/resume.html", target=target, fields=kept, resumed_field=RESUMED_FIELD)
    return redirect(target or _home(role), 303)


@bp.post("/sign-out")
@page(None, stale_token_ok=True)
def sign_out_page() -> Any:
    """End the session, on the server too: a copy of the cookie signs nobody in.

    A tab opened before the last sign-in holds an old token: from this console's own pages its
    Sign out still signs out, rather than answering 403 and leaving the key in the browser.
    """
    sign_out()
    flash("Signed out. The session is over, here and wherever its cookie was copied.", "success")
    return back("console.sign_in")


@bp.get("/docs")
@page(None)
def docs() -> str:
    """The interactive API reference, from /openapi.json, with Swagger UI served from this package."""
    return render_template("console/docs.html")


@bp.route("/<path:unknown>", methods=["GET", "POST"])
@page(None)
def no_such_page(unknown: str) -> Any:
    """A mistyped console address: the console's own 404 page, with its navigation and headers, not the API's JSON.

    The pattern matches only what no other page does (werkzeug tries a path converter last).
    """
    abort(404, "There is no console page at this address. Check it, or start again from the experiments list.")
