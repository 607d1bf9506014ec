"""bandit arms keep the centred second moment of their users' non-zero rewards

`reward_count` users of the arm have a non-zero reward; `reward_m2` is the sum of
their squared deviations from their own mean. The pulls still waiting for a
reward count as zeros, added back when the policy reads the arm. Backfilled from
the sums for arms stored before (as if every pulled user had a reward).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('bandit_arm_stats') as batch:
        batch.add_column(sa.Column('reward_m2', sa.Float(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('reward_count', sa.BigInteger(), nullable=False, server_default='0'))
    op.execute(
        "UPDATE bandit_arm_stats SET reward_count = pulls, reward_m2 = CASE WHEN pulls > 0 AND reward_sumsq > reward_sum * reward_sum / pulls "
        "THEN reward_sumsq - reward_sum * reward_sum / pulls ELSE 0 END"
    )


def downgrade() -> None:
    with op.batch_alter_table('bandit_arm_stats') as batch:
        batch.drop_column('reward_count')
        batch.drop_column('reward_m2')
