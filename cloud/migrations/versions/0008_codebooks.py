"""codebooks: PQ codebooks fitted by the cloud, by content hash

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 04:15:00

- ``codebooks``: one row per codebook (its ``.npz`` file, codec id, the encoder space it was
  fitted for, by name as in ``spaces.name``, how it was fitted); the cloud pushes the newest of
  a space to that space's edges.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "codebooks",
        sa.Column("content_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("codec_id", sa.String(length=64), nullable=False),
        sa.Column("space", sa.String(length=200), nullable=False),
        sa.Column("encoder", sa.String(length=128), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("file", sa.LargeBinary(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("content_hash", name=op.f("pk_codebooks")),
    )
    op.create_index(op.f("ix_codebooks_space"), "codebooks", ["space"])


def downgrade() -> None:
    op.drop_index(op.f("ix_codebooks_space"), table_name="codebooks")
    op.drop_table("codebooks")
