"""Outcomes: what users did on an experiment's metrics, reported by the storefront."""
from __future__ import annotations

from pydantic import Field

from service.http.schemas.common import MAX_BATCH, FiniteFloat, Id, Input, Key, Output, Timestamp


class OutcomeIn(Input):
    """One outcome of one user on one metric; `outcome_id` makes it idempotent."""

    outcome_id: Id
    experiment: Key
    user_id: Id
    metric: Key
    value: FiniteFloat = 1.0
    timestamp: Timestamp | None = None


class OutcomeBatch(Input):
    """Up to 10,000 outcomes, validated whole and stored in one transaction."""

    outcomes: list[OutcomeIn] = Field(max_length=MAX_BATCH)


class OutcomesAccepted(Output):
    """Exact counts: new, replayed, and outcomes of users never exposed."""

    accepted: int
    duplicates: int
    ignored: int
