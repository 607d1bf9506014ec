"""training log: user and item codes, columnar event segments; a covering index for serving

Training used to fetch every event row (5M rows take seconds just to fetch);
it now reads one packed segment per accepted batch. Events stored before this
revision are written to segments here, 10,000 at a time in id order.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import numpy as np
import sqlalchemy as sa

from recommender.matrix import EVENT_TYPES
from service.store.event_log import pack


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_BACKFILL_ROWS = 10_000


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table('user_codes',
    sa.Column('code', big_id, autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('code'),
    sa.UniqueConstraint('user_id')
    )
    op.create_table('item_codes',
    sa.Column('code', big_id, autoincrement=True, nullable=False),
    sa.Column('item_id', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('code'),
    sa.UniqueConstraint('item_id')
    )
    op.create_table('event_segments',
    sa.Column('id', big_id, autoincrement=True, nullable=False),
    sa.Column('last_event_id', sa.BigInteger(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _backfill(op.get_bind())
    # Serving reads (item_id, type, ts) of a user's recent events on every request;
    # with those columns in the index, SQLite and PostgreSQL answer from the index alone.
    op.create_index('ix_events_user_recent', 'events', ['user_id', 'ts', 'item_id', 'type'])
    op.drop_index('ix_events_user_ts', table_name='events')


def _backfill(conn: sa.Connection) -> None:
    conn.execute(sa.text("INSERT INTO user_codes (user_id) SELECT user_id FROM events GROUP BY user_id ORDER BY MIN(id)"))
    conn.execute(sa.text("INSERT INTO item_codes (item_id) SELECT item_id FROM events GROUP BY item_id ORDER BY MIN(id)"))
    users = dict(conn.execute(sa.text("SELECT user_id, code FROM user_codes")).all())
    items = dict(conn.execute(sa.text("SELECT item_id, code FROM item_codes")).all())
    types = {t: k for k, t in enumerate(EVENT_TYPES)}
    last = 0
    while True:
        rows = conn.execute(
            sa.text("SELECT id, user_id, item_id, type, ts FROM events WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": _BACKFILL_ROWS},
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        data = pack(
            np.array([users[r[1]] for r in rows], dtype=np.int64),
            np.array([items[r[2]] for r in rows], dtype=np.int64),
            np.array([types[r[3]] for r in rows], dtype=np.uint8),
            np.array([r[4] for r in rows], dtype=np.float64),
        )
        conn.execute(
            sa.text("INSERT INTO event_segments (last_event_id, events, data) VALUES (:last, :n, :data)"),
            {"last": last, "n": len(rows), "data": data},
        )


def downgrade() -> None:
    op.create_index('ix_events_user_ts', 'events', ['user_id', 'ts'])
    op.drop_index('ix_events_user_recent', table_name='events')
    op.drop_table('event_segments')
    op.drop_table('item_codes')
    op.drop_table('user_codes')
