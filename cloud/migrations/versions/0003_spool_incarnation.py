"""journal: spool incarnation and highest seq ever stored, per edge

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 16:00:00

``journal_watermarks.spool_id`` (the edge spool's incarnation its last stored frames came
from; empty for frames stored before protocol version 2) and ``max_seq`` (the highest seq ever
stored: a renumbered spool continues after it). Existing rows get the highest seq still in the
journal, or the watermark when retention has deleted more.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journal_watermarks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("spool_id", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("max_seq", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE journal_watermarks SET max_seq = COALESCE((SELECT MAX(f.seq) FROM "
        "journal_frames f WHERE f.edge_id = journal_watermarks.edge_id), 0)"
    )
    op.execute("UPDATE journal_watermarks SET max_seq = watermark WHERE max_seq < watermark")


def downgrade() -> None:
    with op.batch_alter_table("journal_watermarks", schema=None) as batch_op:
        batch_op.drop_column("max_seq")
        batch_op.drop_column("spool_id")
