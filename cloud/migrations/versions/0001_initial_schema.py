"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 11:38:34.644423
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "codecs",
        sa.Column("fingerprint", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("codec_id", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_codecs")),
    )
    op.create_table(
        "edges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("software_version", sa.String(length=64), nullable=False),
        sa.Column("detector", sa.String(length=128), nullable=False),
        sa.Column("encoder", sa.String(length=128), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
        sa.Column("random_init_encoder", sa.Boolean(), nullable=False),
        sa.Column("first_seen_us", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edges")),
    )
    op.create_table(
        "jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before_us", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_jobs_state_not_before_us"), ["state", "not_before_us"], unique=False
        )

    op.create_table(
        "journal_frames",
        sa.Column("edge_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("capture_ts_us", sa.BigInteger(), nullable=False),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.Column("frame", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("edge_id", "seq", name=op.f("pk_journal_frames")),
    )
    with op.batch_alter_table("journal_frames", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_journal_frames_capture_ts_us"), ["capture_ts_us"], unique=False
        )

    op.create_table(
        "journal_watermarks",
        sa.Column("edge_id", sa.String(length=64), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("edge_id", name=op.f("pk_journal_watermarks")),
    )
    op.create_table(
        "spaces",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("encoder", sa.String(length=128), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("random_init", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spaces")),
        sa.UniqueConstraint("name", name=op.f("uq_spaces_name")),
    )
    op.create_table(
        "cameras",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("edge_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("first_seen_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["edge_id"], ["edges.id"], name=op.f("fk_cameras_edge_id_edges")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cameras")),
        sa.UniqueConstraint("edge_id", "name", name=op.f("uq_cameras_edge_id_name")),
    )
    op.create_table(
        "descriptions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("camera_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("from_us", sa.BigInteger(), nullable=False),
        sa.Column("to_us", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("describer", sa.String(length=128), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["cameras.id"], name=op.f("fk_descriptions_camera_id_cameras")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_descriptions")),
    )
    with op.batch_alter_table("descriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_descriptions_camera_id_from_us"), ["camera_id", "from_us"], unique=False
        )

    op.create_table(
        "frame_counts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "camera_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["cameras.id"], name=op.f("fk_frame_counts_camera_id_cameras")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frame_counts")),
    )
    with op.batch_alter_table("frame_counts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_frame_counts_camera_id_ts_us"), ["camera_id", "ts_us"], unique=False
        )

    op.create_table(
        "tracks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "camera_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("local_id", sa.BigInteger(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=True),
        sa.Column("first_seen_us", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=True),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.Column("class_votes", sa.JSON(), nullable=True),
        sa.Column("path", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["cameras.id"], name=op.f("fk_tracks_camera_id_cameras")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracks")),
    )
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tracks_camera_id_local_id"), ["camera_id", "local_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tracks_last_seen_us"), ["last_seen_us"], unique=False)

    op.create_table(
        "detections",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "camera_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("track_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("edge_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("has_embedding", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["camera_id"], ["cameras.id"], name=op.f("fk_detections_camera_id_cameras")
        ),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name=op.f("fk_detections_track_id_tracks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detections")),
    )
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_detections_camera_id_ts_us"), ["camera_id", "ts_us"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_detections_track_id"), ["track_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_detections_ts_us"), ["ts_us"], unique=False)

    op.create_table(
        "embeddings",
        sa.Column(
            "detection_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("space_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("codec", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.SmallInteger(), nullable=False),
        sa.Column("code", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["codec"], ["codecs.fingerprint"], name=op.f("fk_embeddings_codec_codecs")
        ),
        sa.ForeignKeyConstraint(
            ["detection_id"], ["detections.id"], name=op.f("fk_embeddings_detection_id_detections")
        ),
        sa.ForeignKeyConstraint(
            ["space_id"], ["spaces.id"], name=op.f("fk_embeddings_space_id_spaces")
        ),
        sa.PrimaryKeyConstraint("detection_id", name=op.f("pk_embeddings")),
    )
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_embeddings_space_id_detection_id"),
            ["space_id", "detection_id"],
            unique=False,
        )


def downgrade() -> None:

    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_embeddings_space_id_detection_id"))

    op.drop_table("embeddings")
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detections_ts_us"))
        batch_op.drop_index(batch_op.f("ix_detections_track_id"))
        batch_op.drop_index(batch_op.f("ix_detections_camera_id_ts_us"))

    op.drop_table("detections")
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracks_last_seen_us"))
        batch_op.drop_index(batch_op.f("ix_tracks_camera_id_local_id"))

    op.drop_table("tracks")
    with op.batch_alter_table("frame_counts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_frame_counts_camera_id_ts_us"))

    op.drop_table("frame_counts")
    with op.batch_alter_table("descriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_descriptions_camera_id_from_us"))

    op.drop_table("descriptions")
    op.drop_table("cameras")
    op.drop_table("spaces")
    op.drop_table("journal_watermarks")
    with op.batch_alter_table("journal_frames", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_journal_frames_capture_ts_us"))

    op.drop_table("journal_frames")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_state_not_before_us"))

    op.drop_table("jobs")
    op.drop_table("edges")
    op.drop_table("codecs")
