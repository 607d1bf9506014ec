"""a partial index of purchases, for the serving read of a known user

A user the model knows is scored from its factors, so serving reads only their purchases
(to leave them out). Through the index of all their events that read walks every view and
click too; through this one it walks the purchases alone.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_events_user_purchases', 'events', ['user_id', 'ts', 'item_id'],
                    postgresql_where=sa.text("type = 'purchase'"), sqlite_where=sa.text("type = 'purchase'"))


def downgrade() -> None:
    op.drop_index('ix_events_user_purchases', table_name='events')
