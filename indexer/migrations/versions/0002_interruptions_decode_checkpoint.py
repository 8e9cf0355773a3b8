"""Interruptions apart from attempts, what a decode lost, and the checkpoint that made the features.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-10 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        # Existing rows start with no interruption on record (their attempts stay as they were).
        batch.add_column(sa.Column("interruptions", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("frames_expected", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("warnings", sa.JSON(), nullable=True))
        # NULL for videos indexed before fingerprints were recorded: taken as made by the running checkpoint.
        batch.add_column(sa.Column("checkpoint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("checkpoint")
        batch.drop_column("warnings")
        batch.drop_column("frames_expected")
        batch.drop_column("interruptions")
