"""Layers: the share of users each running or paused experiment of a layer owns, claimed at its first start."""
from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from experiments.definitions import LIVE
from experiments.layers import Range, first_fit, free_share, largest_gap
from service.errors import Conflict
from service.store.database import Database
from service.store.tables import ExperimentRow

def owned(session: Session, layer: str, but: str | None = None) -> list[Range]:
    """The ranges that running and paused experiments own in a layer."""
    rows = session.execute(
        select(ExperimentRow.key, ExperimentRow.layer_start, ExperimentRow.layer_end).where(
            ExperimentRow.layer == layer, ExperimentRow.status.in_(LIVE), ExperimentRow.layer_start.is_not(None)
        )
    ).all()
    return [Range(k, float(a), float(b)) for k, a, b in rows if k != but and a is not None and b is not None]


def claim(session: Session, row: ExperimentRow) -> tuple[float, float]:
    """The first free range of the experiment's layer as wide as its traffic; Conflict naming the free share if none fits."""
    assert row.layer is not None
    if session.get_bind().dialect.name == "postgresql":
        # Two starts in one layer must not both take the same gap; SQLite already serialises writers.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:layer, 7))"), {"layer": f"layer:{row.layer}"})
    taken = owned(session, row.layer, but=row.key)
    claimed = first_fit(taken, row.traffic)
    if claimed is None:
        raise Conflict(
            f"layer {row.layer!r} has no free range of width {row.traffic:g}: {free_share(taken):g} of it is free, "
            f"the widest gap is {largest_gap(taken):g}; {_holders(taken)}; stop one of them or lower this one's traffic"
        )
    return claimed


def _holders(taken: list[Range], named: int = 5) -> str:
    """'held by a [0, 0.5) and b [0.5, 1)': who holds a full layer, so that a refusal says what to stop."""
    ranges = sorted(taken, key=lambda r: r.start)
    shown = [f"{r.experiment} [{r.start:g}, {r.end:g})" for r in ranges[:named]]
    if len(ranges) > named:
        shown.append(f"{len(ranges) - named} more")
    return "held by " + (shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1])


def layer_ranges(db: Database, layer: str) -> list[Range]:
    """The ranges running and paused experiments own in a layer, in position order."""
    with db.read() as session:
        return sorted(owned(session, layer), key=lambda r: r.start)
