"""alerts: the dispatcher's cursor and its rules' quiet periods

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 12:00:00

- ``alert_cursors``: per dispatcher (``default``), the last ``analytics_events.id`` handled.
- ``alert_quiet``: per (rule, camera, subject), the event time of the last alert.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alert_cursors")),
    )
    op.create_table(
        "alert_quiet",
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("camera_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("last_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "camera_id", "subject", name=op.f("pk_alert_quiet")),
    )


def downgrade() -> None:
    op.drop_table("alert_quiet")
    op.drop_table("alert_cursors")
