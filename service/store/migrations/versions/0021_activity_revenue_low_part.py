"""user_activity.revenue_low: what rounding took from a user's revenue

A user's revenue is the sum of their purchases' values, kept as a running total that each batch of
events adds to. A double rounds each addition: 0.01, 1e12 and -1e12 in one batch had left
0.010009765625, and in three batches the same. Now each batch's values are summed exactly (as two
doubles) and added with the error of every addition found exactly (TwoSum); `revenue` stays the
total correctly rounded, which readers and the at-risk index read as before, and `revenue_low` keeps
what it rounded away. Only a new column with a default: an older release beside this one keeps
adding to `revenue` alone, which is what it did before.

Revision ID: 0021
Revises: 0020
"""
import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('user_activity', sa.Column('revenue_low', sa.Float(precision=53), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('user_activity') as batch:
        batch.drop_column('revenue_low')
    if op.get_bind().dialect.name == "sqlite":  # SQLite rebuilt the table, and its index without the DESC order at-risk pages read by
        op.drop_index('ix_user_activity_value', 'user_activity')
        op.create_index('ix_user_activity_value', 'user_activity', [sa.text('revenue DESC'), sa.text('purchases DESC'), 'user_id'])
