"""Users drifting away, and the layers experiments share."""
from __future__ import annotations

from pydantic import Field

from service.http.schemas.common import Output, Query


class AtRiskQuery(Query):
    """Who counts as drifting away, and which page."""

    idle_days: float = Field(default=30, ge=0, le=36_500, allow_inf_nan=False, description="days since the user's last event, at least")
    min_purchases: int = Field(default=1, ge=0, le=1_000_000_000)
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=1024, description="next_cursor of the previous page")


class AtRiskUser(Output):
    """One user who has gone quiet."""

    user_id: str
    last_seen: str = Field(description="the user's latest event; one dated ahead of the server's clock counts as seen when it arrived")
    idle_days: float
    purchases: int
    revenue: float


class AtRiskOut(Output):
    """A page of users, most valuable first; next_cursor is null on the last page."""

    users: list[AtRiskUser]
    next_cursor: str | None


class LayerRange(Output):
    """The positions [start, end) an experiment owns."""

    experiment: str
    start: float
    end: float


class LayerOut(Output):
    """A layer's ranges and its free share."""

    layer: str
    ranges: list[LayerRange]
    free: float
