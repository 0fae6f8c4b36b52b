"""path points: detections flagged as a TrackSummary's simplified path points

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 04:30:00

- ``detections.path_point``: the row is a point of a track's simplified path (protocol 4
  ``TrackSummary``), not a box the edge sent for that frame: boxes between two such points are
  interpolated when read (``cloud.catalog_paths``). Existing rows get false.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("path_point", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_column("path_point")
