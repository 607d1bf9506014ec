"""the partial index of purchases names `type`, so that SQLite reads a known user's purchases from it

SQLite's planner counts an index as covering only when it holds every column the query
names, the partial index's own condition included: without `type`, it walked the user's
whole history through the index of all their events instead (every view and click, about 15
times as many rows on the benchmark's data; 33 against 15 µs a read warm, 113 µs and more
cold). PostgreSQL already read the purchases alone, and keeps doing so. The index holds
purchases only, so rebuilding it is quick.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_PURCHASES = sa.text("type = 'purchase'")


def _replace(columns: list[str]) -> None:
    op.drop_index('ix_events_user_purchases', table_name='events')
    op.create_index('ix_events_user_purchases', 'events', columns, postgresql_where=_PURCHASES, sqlite_where=_PURCHASES)


def upgrade() -> None:
    _replace(['user_id', 'ts', 'item_id', 'type'])


def downgrade() -> None:
    _replace(['user_id', 'ts', 'item_id'])
