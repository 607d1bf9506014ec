"""a run asked to activate when ready remembers which activation it would replace

A run trained with `activate: true` replaced whatever served when it finished, so a rollback
made while it trained was undone minutes later without a word. The run now records the
active model's revision at its request and activates only if no activation came since.
Rows from before keep the old behaviour (NULL).

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.add_column(sa.Column('activate_over', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('activate_over')
