"""model settings as separate objects, and training-run heartbeats

A version's matrix and evaluation settings get columns of their own instead of
sharing `params` with the model's parameters (where a model parameter named
like a setting would have been taken for it). Rows stored before are split
once here. `runner` and `heartbeat_at` let any process tell a training run
whose process died from one that is still working.

Revision ID: 0004
Revises: 0003
"""
import json

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# The names that routed a flat `params` entry to the matrix or the evaluation before this revision.
_MATRIX = {"weights", "half_life_days", "scaling", "alpha", "epsilon"}
_EVALUATION = {"evaluate", "test_fraction", "eval_users", "seed"}


def upgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.add_column(sa.Column('matrix', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('evaluation', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('runner', sa.String(128), nullable=True))
        batch.add_column(sa.Column('heartbeat_at', sa.Float(precision=53), nullable=True))
    conn = op.get_bind()
    table = sa.table('model_versions', sa.column('version', sa.String), sa.column('params', sa.JSON),
                     sa.column('matrix', sa.JSON), sa.column('evaluation', sa.JSON))
    for version, params in conn.execute(sa.select(table.c.version, table.c.params)).all():
        params = params if isinstance(params, dict) else json.loads(params or "{}")
        model = {k: v for k, v in params.items() if k not in _MATRIX | _EVALUATION}
        matrix = {k: v for k, v in params.items() if k in _MATRIX}
        evaluation = {k: v for k, v in params.items() if k in _EVALUATION}
        conn.execute(table.update().where(table.c.version == version).values(params=model, matrix=matrix, evaluation=evaluation))
    with op.batch_alter_table('model_versions') as batch:
        batch.alter_column('matrix', existing_type=sa.JSON(), nullable=False)
        batch.alter_column('evaluation', existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('heartbeat_at')
        batch.drop_column('runner')
        batch.drop_column('evaluation')
        batch.drop_column('matrix')
