"""congestion: per zone and time window, and the runner's closed-window frontier

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00

- ``congestion_windows``: one row per (camera, zone, window start) in which a vehicle was
  present: occupancy, mean speed and unit, vehicles, level, provisional (still open).
- ``analytics_progress.congestion_us``: congestion windows ending at or before it are closed.
  Existing rows get none: the runner starts closing windows from the next data it sees.
- an index on ``analytics_events.at_us``: retention deletes events by their time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "congestion_windows",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("camera_id", _ID, nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("window_us", sa.BigInteger(), nullable=False),
        sa.Column("occupancy", sa.Float(), nullable=False),
        sa.Column("mean_speed", sa.Float(), nullable=True),
        sa.Column("speed_unit", sa.String(length=32), nullable=False),
        sa.Column("vehicles", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
        sa.Column("scene_version", sa.String(length=64), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["cameras.id"], name=op.f("fk_congestion_windows_camera_id_cameras")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_congestion_windows")),
        sa.UniqueConstraint(
            "camera_id",
            "zone",
            "start_us",
            name=op.f("uq_congestion_windows_camera_id_zone_start_us"),
        ),
    )
    op.create_index(op.f("ix_congestion_windows_start_us"), "congestion_windows", ["start_us"])
    with op.batch_alter_table("analytics_progress", schema=None) as batch_op:
        batch_op.add_column(sa.Column("congestion_us", sa.BigInteger(), nullable=True))
    op.create_index(op.f("ix_analytics_events_at_us"), "analytics_events", ["at_us"])


def downgrade() -> None:
    op.drop_index(op.f("ix_analytics_events_at_us"), table_name="analytics_events")
    with op.batch_alter_table("analytics_progress", schema=None) as batch_op:
        batch_op.drop_column("congestion_us")
    op.drop_index(op.f("ix_congestion_windows_start_us"), table_name="congestion_windows")
    op.drop_table("congestion_windows")
