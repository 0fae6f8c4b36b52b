"""describer: job dedupe key, full-text search of descriptions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00

``jobs.key`` with a unique index on (kind, key): a job per camera and window is enqueued once,
whichever process (or replica) gets there first. Full-text search of descriptions is
engine-specific (see ``cloud/describe/fts.py``, whose constants these statements repeat: a
migration must not change when that module does): an FTS5 table with triggers on SQLite, a
GIN expression index on PostgreSQL. Existing descriptions are indexed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The text of a description's body that is searched beside its summary (SQLite, JSON1).
_SQLITE_DETAILS = (
    "coalesce(json_extract({b}, '$.congestion'), '') || ' ' || coalesce((SELECT "
    "group_concat(value, ' ') FROM json_tree({b}, '$.incidents') WHERE type = 'text'), '')"
)
SQLITE_DDL = (
    "CREATE VIRTUAL TABLE descriptions_fts USING fts5("
    "summary, details, content='', tokenize='porter unicode61')",
    "CREATE TRIGGER descriptions_fts_insert AFTER INSERT ON descriptions BEGIN "
    "INSERT INTO descriptions_fts(rowid, summary, details) VALUES "
    f"(new.id, new.summary, {_SQLITE_DETAILS.format(b='new.body')}); END",
    "CREATE TRIGGER descriptions_fts_delete AFTER DELETE ON descriptions BEGIN "
    "INSERT INTO descriptions_fts(descriptions_fts, rowid, summary, details) VALUES "
    f"('delete', old.id, old.summary, {_SQLITE_DETAILS.format(b='old.body')}); END",
    "CREATE TRIGGER descriptions_fts_update AFTER UPDATE ON descriptions BEGIN "
    "INSERT INTO descriptions_fts(descriptions_fts, rowid, summary, details) VALUES "
    f"('delete', old.id, old.summary, {_SQLITE_DETAILS.format(b='old.body')}); "
    "INSERT INTO descriptions_fts(rowid, summary, details) VALUES "
    f"(new.id, new.summary, {_SQLITE_DETAILS.format(b='new.body')}); END",
    "INSERT INTO descriptions_fts(rowid, summary, details) SELECT id, summary, "
    f"{_SQLITE_DETAILS.format(b='body')} FROM descriptions",
)
PG_DOCUMENT = (
    "to_tsvector('english'::regconfig, summary)"
    " || to_tsvector('english'::regconfig, coalesce(body::jsonb ->> 'congestion', ''))"
    " || jsonb_to_tsvector('english'::regconfig,"
    " coalesce(body::jsonb -> 'incidents', '[]'::jsonb), '[\"string\"]'::jsonb)"
)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key", sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_kind_key"), ["kind", "key"], unique=True)

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_DDL:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(
            f"CREATE INDEX ix_descriptions_fulltext ON descriptions USING gin (({PG_DOCUMENT}))"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS descriptions_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS descriptions_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_descriptions_fulltext")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_kind_key"))
        batch_op.drop_column("key")
