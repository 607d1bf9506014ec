"""layers, targeting, and per-user activity

Experiments gain a layer (with the range of positions they own while running)
and a targeting rule. `user_activity` keeps each user's first and last event,
purchases and revenue up to date as events arrive, so that targeting on
behaviour and the at-risk list read one row per user instead of their events.
It is filled here from the events stored before.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('experiments') as batch:
        batch.add_column(sa.Column('targeting', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('layer', sa.String(64), nullable=True))
        batch.add_column(sa.Column('layer_start', sa.Float(), nullable=True))
        batch.add_column(sa.Column('layer_end', sa.Float(), nullable=True))
    op.create_index('ix_experiments_layer', 'experiments', ['layer'])
    op.create_table(
        'user_activity',
        sa.Column('user_id', sa.String(128), primary_key=True),
        sa.Column('first_seen', sa.Float(precision=53), nullable=False),
        sa.Column('last_seen', sa.Float(precision=53), nullable=False),
        sa.Column('purchases', sa.BigInteger(), nullable=False),
        sa.Column('revenue', sa.Float(), nullable=False),
    )
    op.create_index('ix_user_activity_value', 'user_activity', [sa.text('revenue DESC'), sa.text('purchases DESC'), 'user_id'])
    op.execute(
        "INSERT INTO user_activity (user_id, first_seen, last_seen, purchases, revenue) "
        "SELECT user_id, MIN(ts), MAX(ts), SUM(CASE WHEN type = 'purchase' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN type = 'purchase' THEN COALESCE(value, 0) ELSE 0 END) FROM events GROUP BY user_id"
    )


def downgrade() -> None:
    op.drop_index('ix_user_activity_value', table_name='user_activity')
    op.drop_table('user_activity')
    op.drop_index('ix_experiments_layer', table_name='experiments')
    with op.batch_alter_table('experiments') as batch:
        batch.drop_column('layer_end')
        batch.drop_column('layer_start')
        batch.drop_column('layer')
        batch.drop_column('targeting')
