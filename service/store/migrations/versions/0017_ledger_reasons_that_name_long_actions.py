"""reward_ledger.reason holds up to 256 characters

A reason names the schedule's action ("not a qualifying action (this schedule rewards
'subscription_renewal')"), and an action key may be 64 characters long: past about 15 the text
no longer fitted 64 characters, and PostgreSQL refused the ledger row, so every action that did not
qualify under such a schedule failed with a 500 and was never recorded. SQLite does not enforce a
VARCHAR's length, but its declared type is rewritten too (a copy of the table), so that both stores
describe the same schema.

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def _reason(length: int) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'ALTER TABLE reward_ledger ALTER COLUMN reason TYPE VARCHAR({length}) COLLATE "C"')
    else:
        with op.batch_alter_table('reward_ledger') as batch:
            batch.alter_column('reason', type_=sa.String(length), existing_nullable=True)


def upgrade() -> None:
    _reason(256)


def downgrade() -> None:
    op.execute("UPDATE reward_ledger SET reason = SUBSTR(reason, 1, 64) WHERE LENGTH(reason) > 64")
    _reason(64)
