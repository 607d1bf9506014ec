"""How a change to an experiment waits for the writes in flight that it must not race (PostgreSQL)."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.errors import Busy

# Changes lock the experiment's row FOR NO KEY UPDATE on PostgreSQL: an exposure's foreign-key check
# takes FOR KEY SHARE on the same row, and must not wait behind (or deadlock with) a pause or stop.
CHANGE_LOCK = {"key_share": True}


# How long a pause, stop or change of a running experiment waits for the tables it settles. While it
# waits, new first exposures (and, for a stop, outcome batches) of every experiment queue behind it, so
# the wait is bounded; an outcome batch of 10,000 rows or a maturation of 100,000 holds a table for 0.2 to 0.6 s.
SETTLE_SECONDS = 2
# What is being written to each table a change may settle, as its refusal names it.
_WRITES = {"outcomes": "outcome batches", "exposures": "first exposures", "reward_states": "reward actions"}


def settle(session: Session, tables: tuple[str, ...]) -> None:
    """Wait for what is being written to `tables` to commit, and hold new writes until this change commits (PostgreSQL).

    exposures: an exposure's statement checks the experiment's stamp in its own snapshot, taken as it
    began; one slowed inside it (its bandit arm's row held by an outcome batch, say) had committed after a
    pause or stop returned, enrolling a user the experiment no longer admitted. outcomes (a stop): a batch
    that read the experiment as running adds every outcome to the totals, also one dated after the stop;
    once the batches in flight have committed, the stop takes such outcomes back out (`on_stop`), and a
    later batch reads the stop. reward_states (a stop): a reward action decided by the schedule after the
    stop had returned would grant points the stopped experiment no longer gives; an action reads the status
    once it holds its user's state (`rewards._stopped`). SHARE conflicts with the ROW EXCLUSIVE lock a write holds until it commits,
    and a statement waiting for its lock takes its snapshot once it has it, after this change.

    Taken after the experiment's row: a draft's deletion locks the row and then cascades into exposures,
    and the other order deadlocked with it; what writes these tables takes only KEY SHARE on the row, which
    the change's FOR NO KEY UPDATE does not wait for. outcomes before exposures, the order an outcome batch
    writes them in (it marks waiting exposures counted after storing its outcomes). Unavailable (503) rather
    than a longer stall when a table stays held past SETTLE_SECONDS: nothing is changed, and a retry is
    safe. SQLite serialises writers already.
    """
    if session.get_bind().dialect.name == "sqlite" or not tables:
        return
    # statement_timeout bounds the whole statement (lock_timeout bounds each table's lock on its own), and
    # lock_timeout is set too so that a shorter one configured on the server does not cut the wait short.
    session.execute(text(f"SET LOCAL statement_timeout = '{SETTLE_SECONDS}s'"))
    session.execute(text(f"SET LOCAL lock_timeout = '{SETTLE_SECONDS}s'"))
    try:
        session.execute(text(f"LOCK TABLE {', '.join(tables)} IN SHARE MODE"))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) not in ("57014", "55P03"):  # query_canceled, lock_not_available
            raise
        raise Busy(
            f"{' or '.join(_WRITES[t] for t in tables)} being written held the experiment's change back for over {SETTLE_SECONDS} s "
            "(a long outcome batch or maintenance); nothing was changed, try again"
        ) from None
    session.execute(text("SET LOCAL statement_timeout TO DEFAULT"))
    session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
