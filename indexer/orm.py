"""ORM models of the catalog (kept apart from the API schemas in app/schemas.py).

Any change here needs a migration in indexer/migrations/versions/.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class VideoStatus(str, enum.Enum):
    """Life of a video: queued -> processing -> ready | failed (processing -> queued after a crash)."""

    queued = "queued"
    processing = "processing"
    ready = "ready"
    failed = "failed"


class Scope(str, enum.Enum):
    """What an API key may do; each scope includes the ones before it (admin ⊇ write ⊇ read)."""

    read = "read"
    write = "write"
    admin = "admin"

    def allows(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


class Base(DeclarativeBase):
    pass


class Video(Base):
    """One uploaded video; its row is also its indexing job while status is queued."""

    __tablename__ = "videos"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'processing', 'ready', 'failed')", name="ck_videos_status"),
        UniqueConstraint("sha256", name="uq_videos_sha256"),
        Index("ix_videos_status_id", "status", "id"),
        # Ids are never reused (SQLite would otherwise hand a deleted video's id to the next one).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(500))
    external_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # "metadata" is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    status: Mapped[str] = mapped_column(String(16), default=VideoStatus.queued.value)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Indexing runs started; `interruptions` of them were cut short by the process dying, which
    # is never the video's fault, so only the others count towards max_attempts.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    interruptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    duration: Mapped[float | None] = mapped_column(Float)
    fps: Mapped[float | None] = mapped_column(Float)
    frames_indexed: Mapped[int | None] = mapped_column(Integer)
    # Samples the container header promised (duration x fps); more than frames_indexed after damage.
    frames_expected: Mapped[int | None] = mapped_column(Integer)
    warnings: Mapped[list[str] | None] = mapped_column(JSON)
    # Fingerprint of the checkpoint whose model made the stored features (model.checkpoint.fingerprint).
    checkpoint: Mapped[str | None] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str | None] = mapped_column(String(255))
    filename: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    indexed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When this video's matches were last written to the match graph (video_matches); NULL for a
    # ready video means its search is still to be run (set back to NULL each time it turns ready).
    matched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class VideoMatch(Base):
    """One edge of the match graph: `target_id` was found by a search for `query_id`.

    Edges are written when the query video is indexed (indexer.match_graph) and go with either
    video (ON DELETE CASCADE). `segments` map the query's time to the target's. `tier` is the
    hit's tier label where search hits carry one.
    """

    __tablename__ = "video_matches"
    __table_args__ = (
        Index("ix_video_matches_score", "score"),
        Index("ix_video_matches_target_id", "target_id"),
    )

    query_id: Mapped[int] = mapped_column(Integer, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True)
    target_id: Mapped[int] = mapped_column(Integer, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    tier: Mapped[str | None] = mapped_column(String(16))
    segments: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key: only its argon2 hash is stored; `prefix` is the public part that finds the row."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('read', 'write', 'admin')", name="ck_api_keys_scope"),
        UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # NULL for a key not made by hapvr (HAPVR_ADMIN_KEY): those are found by trying the hash.
    prefix: Mapped[str | None] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
