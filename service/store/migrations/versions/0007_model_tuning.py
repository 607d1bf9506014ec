"""tuning settings and trials per model version

A tuned run keeps the settings it was asked for (`tune`), so that whichever
process runs it searches the same way, and every finished trial (`tuning`), so
that the run's progress can be read while it goes on.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.add_column(sa.Column('tune', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('tuning', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('tuning')
        batch.drop_column('tune')
