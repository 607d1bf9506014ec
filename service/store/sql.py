"""Dialect helpers: the portable parts of INSERT ... ON CONFLICT, and bulk statements through the driver."""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.store.tables import AppStateRow

T = TypeVar("T")

# A user's value of a reported metric, from their row of user_metric_totals named {t}.
USER_VALUE = "({t}.total + {t}.total_low)"
# What a + b loses to rounding, exactly (Fast2Sum: the larger operand first), in SQL over two expressions.
ROUNDING_ERROR = "(CASE WHEN ABS({a}) >= ABS({b}) THEN ({a} - ({a} + {b})) + {b} ELSE ({b} - ({a} + {b})) + {a} END)"


def exact_sum(values: list[float]) -> tuple[float, float]:
    """The sum of `values` as two doubles, the rounded sum and what it rounded away: about twice a double's precision."""
    high = math.fsum(values)
    return high, math.fsum([*values, -high])


def run(session: Session, sql: str, params: Sequence[Any]) -> list[Any]:
    """Execute on the DBAPI cursor of the session's transaction; `?` marks parameters.

    With thousands of parameters or rows, SQLAlchemy's statement parsing and
    row objects would cost more than the statement itself.
    """
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, tuple(params))
        return list(cursor.fetchall()) if cursor.description is not None else []
    finally:
        cursor.close()


def chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size`, so that multi-row statements stay under parameter limits."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def set_state(session: Session, key: str, value: str) -> None:
    """Set a shared setting and bump its revision."""
    stmt = insert(session, AppStateRow).values(key=key, value=value, revision=1)
    session.execute(
        stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value, "revision": AppStateRow.revision + 1})
    )

