"""analytics: scenes, events, the runner's progress, alert dead letters, tracks.updated_us

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 10:00:00

- ``tracks.updated_us`` (the ingest writer's clock when it last changed a track or gave it a
  sighting) with an index on (camera_id, updated_us): the analytics runner's change feed.
  Existing tracks get 0: they predate every scene, so no runner owes them an analysis.
- ``scenes``: each camera's scenes (the newest is current; history kept).
- ``analytics_events``: one row per event key (track, kind, subject, ordinal).
- ``analytics_progress``: per camera, the ``tracks.updated_us`` analysed up to.
- ``alert_dead_letters``: alerts whose delivery failed for good, for replay.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("updated_us", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            batch_op.f("ix_tracks_camera_id_updated_us"), ["camera_id", "updated_us"]
        )

    op.create_table(
        "scenes",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("camera_id", _ID, nullable=False),
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["cameras.id"], name=op.f("fk_scenes_camera_id_cameras")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scenes")),
    )
    op.create_index(op.f("ix_scenes_camera_id_id"), "scenes", ["camera_id", "id"])

    op.create_table(
        "analytics_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("camera_id", _ID, nullable=False),
        sa.Column("track_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("scene_version", sa.String(length=64), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["cameras.id"], name=op.f("fk_analytics_events_camera_id_cameras")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_events")),
        sa.UniqueConstraint(
            "track_id",
            "kind",
            "subject",
            "ordinal",
            name=op.f("uq_analytics_events_track_id_kind_subject_ordinal"),
        ),
    )
    op.create_index(
        op.f("ix_analytics_events_camera_id_at_us"), "analytics_events", ["camera_id", "at_us"]
    )
    op.create_index(op.f("ix_analytics_events_kind_at_us"), "analytics_events", ["kind", "at_us"])

    op.create_table(
        "analytics_progress",
        sa.Column("camera_id", _ID, autoincrement=False, nullable=False),
        sa.Column("watermark_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["cameras.id"], name=op.f("fk_analytics_progress_camera_id_cameras")
        ),
        sa.PrimaryKeyConstraint("camera_id", name=op.f("pk_analytics_progress")),
    )

    op.create_table(
        "alert_dead_letters",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("replayed_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_dead_letters")),
    )
    op.create_index(op.f("ix_alert_dead_letters_created_us"), "alert_dead_letters", ["created_us"])


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_dead_letters_created_us"), table_name="alert_dead_letters")
    op.drop_table("alert_dead_letters")
    op.drop_table("analytics_progress")
    op.drop_index(op.f("ix_analytics_events_kind_at_us"), table_name="analytics_events")
    op.drop_index(op.f("ix_analytics_events_camera_id_at_us"), table_name="analytics_events")
    op.drop_table("analytics_events")
    op.drop_index(op.f("ix_scenes_camera_id_id"), table_name="scenes")
    op.drop_table("scenes")
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracks_camera_id_updated_us"))
        batch_op.drop_column("updated_us")
