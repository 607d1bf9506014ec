"""Rewards: actions that earn points under an arm's schedule, and a user's ledger."""
from __future__ import annotations

from pydantic import Field

from service.http.schemas.common import FiniteFloat, Id, Input, Key, Output, Query, Timestamp


class RewardIn(Input):
    """One reward-earning action; `action_id` makes it idempotent."""

    action_id: Id
    user_id: Id
    experiment: Key
    action: Key = "purchase"
    value: FiniteFloat | None = Field(default=None, description="money for a purchase; a negative value is a return, which no schedule counts or rewards")
    timestamp: Timestamp | None = Field(
        default=None,
        description="when the action happened (omitted: now); one dated ahead of the server's clock happens, and is recorded, when it arrives, "
        "so that no date sent ahead holds later rewards back or opens a multiplier window early",
    )


class RewardOut(Output):
    """What the action earned under the user's arm's schedule."""

    action_id: str
    experiment: str
    user_id: str
    arm: str | None
    enrolled: bool
    rewarded: bool
    points: float = Field(description="what this action earned, multiplier included, at most 1e12 (a larger product is capped, and `reason` says so)")
    balance: float
    sequence: int = Field(
        description="the user's qualifying actions so far, this one included when it qualifies (the n of 'every nth'); "
        "an action that does not qualify, or arrives after the stop, repeats the count before it"
    )
    reason: str
    duplicate: bool
    timestamp: str
    recorded: bool = Field(description="false when nothing was stored (a user never exposed to the experiment): the action_id stays free, so the same action sent after the user's assignment is applied then")


class LedgerQuery(Query):
    """Which page of the history."""

    limit: int = Field(default=1000, ge=1, le=1000)
    cursor: str | None = Field(default=None, pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")


class LedgerOut(Output):
    """A user's balance and a page of their reward history in one experiment, in the order the actions were recorded; next_cursor is null on the last page."""

    experiment: str
    user_id: str
    arm: str | None = Field(description="the user's arm, whether or not they have earned anything yet; null when they are not enrolled")
    balance: float
    actions: int
    rewards: int
    history: list[RewardOut]
    next_cursor: str | None
