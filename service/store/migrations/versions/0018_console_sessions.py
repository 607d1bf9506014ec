"""console_sessions: a console sign-in held on the server, not the API key in the cookie

The console's cookie held the raw API key, and signing out only cleared the browser's copy: a copy
of the cookie taken before worked until the key was revoked. The cookie now holds a random token
whose SHA-256 is a row here, deleted at sign-out and read as signed out after 8 hours. Only a new table: an
older release runs beside it (its sign-ins keep their old cookies, which this release does not
read, so their users sign in again).

Revision ID: 0018
Revises: 0017
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def _text(length: int) -> sa.types.TypeEngine:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('token_hash', _text(64), primary_key=True),
        sa.Column('key_id', sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.ForeignKey('api_keys.id'), nullable=False),
        sa.Column('created_at', sa.Float(precision=53), nullable=False),
    )
    op.create_index('ix_console_sessions_key_id', 'console_sessions', ['key_id'])
    op.create_index('ix_console_sessions_created_at', 'console_sessions', ['created_at'])


def downgrade() -> None:
    op.drop_table('console_sessions')
