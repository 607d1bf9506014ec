"""user activity counts an event dated ahead of its arrival as seen when it arrived, and a return as no purchase

Until now a user's last_seen was the latest timestamp any client sent: one event dated years ahead
(the contract accepts up to 100 years on) kept that user off the at-risk list for good, and a
purchase with a negative value (a return) counted as a purchase. Writers apply both rules from this
release on; this rebuilds the rows of the users whose stored events break them.

On PostgreSQL the table is locked against writers (SHARE ROW EXCLUSIVE) for the rebuild, so that an
ingest running meanwhile waits and then adds its events to the rebuilt row, rather than being
overwritten by it.

Revision ID: 0016
Revises: 0015
"""
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

_AFFECTED = "SELECT DISTINCT user_id FROM events WHERE ts > received_at OR (type = 'purchase' AND value < 0)"
_SEEN = "CASE WHEN ts > received_at THEN received_at ELSE ts END"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("LOCK TABLE user_activity IN SHARE ROW EXCLUSIVE MODE")
    op.execute(f"DELETE FROM user_activity WHERE user_id IN ({_AFFECTED})")
    op.execute(
        "INSERT INTO user_activity (user_id, first_seen, last_seen, purchases, revenue) "
        f"SELECT user_id, MIN({_SEEN}), MAX({_SEEN}), SUM(CASE WHEN type = 'purchase' AND (value IS NULL OR value >= 0) THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN type = 'purchase' THEN COALESCE(value, 0) ELSE 0 END) FROM events WHERE user_id IN ({_AFFECTED}) GROUP BY user_id"
    )


def downgrade() -> None:
    """Nothing to undo: the rows stay as the rules of this release compute them."""
