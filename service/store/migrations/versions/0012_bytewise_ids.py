"""string columns compare bytewise on PostgreSQL, as they do on SQLite

Under a locale such as en_US.UTF-8 (or glibc's C.UTF-8) every comparison in an
index keyed by an event, user or item id goes through strcoll(); "C" compares
bytes. Equality is bytewise under both, so no id changes meaning, and order now
matches SQLite's, for every string column alike (ids in experiment tables are
looked up by index too). Workers still running the code before this compare
their staging tables' default-collated text to these columns under "C": a
column's own collation wins over the database default. Measured through
`bench/ingest.py` on PostgreSQL: about a fifth more events per second.
Rebuilding the indexes holds each table's lock while it runs.

Revision ID: 0012
Revises: 0011
"""
from alembic import op
from sqlalchemy import text

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def _collate(collation: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return  # SQLite compares bytes already
    columns = bind.execute(text(
        "SELECT table_name, column_name, character_maximum_length FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND data_type = 'character varying' AND table_name <> 'alembic_version' "
        "ORDER BY table_name, ordinal_position"
    )).all()
    tables: dict[str, list[str]] = {}
    for table, column, length in columns:
        tables.setdefault(table, []).append(f'ALTER COLUMN "{column}" TYPE varchar({length}) COLLATE {collation}')
    for table, changes in tables.items():
        op.execute(f'ALTER TABLE "{table}" {", ".join(changes)}')


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')
