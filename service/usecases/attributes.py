"""The attributes targeting rules read: what the storefront sent, and what the service knows from stored behaviour."""
from __future__ import annotations

from typing import Any, Mapping

from experiments.targeting import BALANCE_PREFIX, BUILTIN_ATTRIBUTES
from service.store import rewards as reward_store
from service.store import user_activity
from service.store.database import Database

DAY = 86_400.0

def user_attributes(db: Database, user_id: str, now: float, sent: Mapping[str, Any], needed: set[str]) -> dict[str, Any]:
    """The request's attributes with the built-in ones a rule needs; reads the store only for those."""
    attributes = dict(sent)
    if needed & set(BUILTIN_ATTRIBUTES):
        activity = user_activity.of_user(db, user_id)
        if activity is not None and activity.last_seen >= now:
            # An exposure logged late (or another host's clock ahead): what the user did from then on is after it.
            activity = user_activity.as_of(db, user_id, now)
        attributes["purchases"] = activity.purchases if activity else 0
        attributes["revenue"] = activity.revenue if activity else 0.0
        attributes["idle_days"] = (now - activity.last_seen) / DAY if activity else None
        attributes["days_since_first_seen"] = (now - activity.first_seen) / DAY if activity else None
    for name in needed:
        if name.startswith(BALANCE_PREFIX):
            attributes[name] = reward_store.balance(db, name[len(BALANCE_PREFIX):], user_id)
    return attributes
