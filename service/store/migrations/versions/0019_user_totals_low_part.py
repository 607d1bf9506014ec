"""user_metric_totals.total_low: what rounding took from a user's running total

A user's value of a reported metric is the sum of their outcome values, kept as a running total
that each batch adds to. A double rounds each addition: 1e12, then 1e-5, then -1e12 in three
batches gave 0 (not converted), while the same outcomes in one batch, summed exactly, gave 1e-5
(converted). Each addition's rounding error, found exactly (Fast2Sum), now accumulates here, and
readers take total + total_low. Only a new column with a default: an older release beside this
one keeps adding to `total` alone, which is what it did before.

Revision ID: 0019
Revises: 0018
"""
import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('user_metric_totals', sa.Column('total_low', sa.Float(precision=53), nullable=False, server_default='0'))


def downgrade() -> None:
    # Folded into the total first: a user whose value lived in total_low alone (1e12, 1e-5, -1e12) stays converted.
    op.execute("UPDATE user_metric_totals SET total = total + total_low WHERE total_low <> 0")
    with op.batch_alter_table('user_metric_totals') as batch:
        batch.drop_column('total_low')
