"""dashboard: signed-in browser sessions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 21:30:00

``ui_sessions``: one row per dashboard sign-in, keyed by the SHA-256 of the session id its
cookie holds, with the API client that signed in, its CSRF token and its expiry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id_sha256", name=op.f("pk_ui_sessions")),
    )
    op.create_index(op.f("ix_ui_sessions_expires_us"), "ui_sessions", ["expires_us"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ui_sessions_expires_us"), table_name="ui_sessions")
    op.drop_table("ui_sessions")
