"""experiment revision counter

Workers cache parsed experiment definitions keyed by (key, revision); every
change bumps the revision, so a cached definition is never stale.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('experiments') as batch:
        batch.add_column(sa.Column('revision', sa.BigInteger(), nullable=False, server_default='1'))
    op.create_index('ix_outcomes_experiment_user', 'outcomes', ['experiment_key', 'user_id'])


def downgrade() -> None:
    op.drop_index('ix_outcomes_experiment_user', table_name='outcomes')
    with op.batch_alter_table('experiments') as batch:
        batch.drop_column('revision')
