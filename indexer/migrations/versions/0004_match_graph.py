"""The match graph: an edge per search hit found when a video is indexed, and when each video's
edges were last written (duplicate groups are read from it, not searched for per request).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-27 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: ready videos of an existing catalog get their matches computed after the next start.
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("matched_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "video_matches",
        sa.Column("query_id", sa.Integer(), sa.ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("target_id", sa.Integer(), sa.ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_video_matches_score", "video_matches", ["score"])
    op.create_index("ix_video_matches_target_id", "video_matches", ["target_id"])


def downgrade() -> None:
    op.drop_index("ix_video_matches_target_id", table_name="video_matches")
    op.drop_index("ix_video_matches_score", table_name="video_matches")
    op.drop_table("video_matches")
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("matched_at")
