"""bandit pulls that wait for their outcome or attribution window

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('exposures') as batch:
        batch.add_column(sa.Column('counted', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_index('ix_exposures_waiting', 'exposures', ['experiment_key', 'exposed_at'],
                    postgresql_where=sa.text('NOT counted'), sqlite_where=sa.text('NOT counted'))


def downgrade() -> None:
    op.drop_index('ix_exposures_waiting', table_name='exposures')
    with op.batch_alter_table('exposures') as batch:
        batch.drop_column('counted')
