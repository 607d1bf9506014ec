"""analysis settings and guardrails per experiment

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('experiments') as batch:
        batch.add_column(sa.Column('analysis', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('guardrails', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('experiments') as batch:
        batch.drop_column('guardrails')
        batch.drop_column('analysis')
