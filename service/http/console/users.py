"""The user page: look up one user's recent events, recommendations, experiment assignments and reward ledgers."""
from __future__ import annotations

from flask import render_template, request

from service.http.console import bp
from service.http.console.session import page
from service.http.endpoint import READ_EXPERIMENTS, services
from service.http.spec import ID
from service.usecases import user_profile


@bp.get("/users")
@page(READ_EXPERIMENTS)
def user_lookup() -> tuple[str, int]:
    """The lookup form and, once a user id is given, that user's picture."""
    # Ids are matched exactly, as the API matches them: " u1" is another user than "u1".
    user_id = request.args.get("user_id", "")
    if not user_id:
        return render_template("console/users.html", user_id="", profile=None, error=None), 200
    if not ID.fullmatch(user_id):  # match would let a final newline past the 128-character bound
        said = "A user id cannot contain a NUL character." if "\x00" in user_id else "A user id is 1 to 128 characters."
        return render_template("console/users.html", user_id=user_id[:128].replace("\x00", ""), profile=None, error=said), 422
    svc = services()
    return render_template("console/users.html", user_id=user_id, profile=user_profile.user_profile(svc.db, svc.models, svc.experiment_cache, user_id), error=None), 200
