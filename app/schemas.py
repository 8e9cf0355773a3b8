"""API schemas (pydantic), apart from the ORM models they are read from."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from indexer.orm import VideoStatus


class Message(BaseModel):
    detail: str


class VideoCreate(BaseModel):
    """The text fields of an upload, beside its file: the one place their limits are written."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=500)
    external_id: str | None = Field(None, max_length=255)
    metadata: dict[str, Any] | None = Field(None, description="a JSON object, kept as is")

    @field_validator("title", "external_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None

    @field_validator("metadata", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        """Multipart sends metadata as text: parse it here, so its errors read like the others."""
        if not isinstance(value, str):
            return value
        if not value:
            return None
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"not valid JSON: {error}") from None
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object")
        return parsed


class VideoPublic(BaseModel):
    """A catalogued video as clients see it."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    status: VideoStatus
    sha256: str
    title: str | None = None
    external_id: str | None = None
    metadata: dict[str, Any] | None = Field(None, validation_alias="meta")
    failure_reason: str | None = None
    attempts: int = Field(description="indexing runs started")
    interruptions: int = Field(0, description="runs cut short by the service stopping (not counted against the video)")
    duration: float | None = Field(None, description="seconds")
    fps: float | None = Field(None, description="frame rate of the source")
    frames_indexed: int | None = None
    frames_expected: int | None = Field(None, description="frames the container header promises at the sampling rate")
    frames_decoded: int | None = Field(
        None, validation_alias="frames_indexed", description="frames the decode yielded (each one is indexed)"
    )
    warnings: list[str] = Field(default_factory=list, description="what a damaged stream lost, one line each")
    checkpoint: str | None = Field(None, description="fingerprint of the model checkpoint that indexed the video")
    size_bytes: int
    filename: str | None = None
    content_type: str | None = None
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None = None

    @field_validator("warnings", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class VideosPublic(BaseModel):
    data: list[VideoPublic]
    count: int = Field(description="videos matching the filters, all pages together")
    limit: int
    offset: int


class VideoAccepted(BaseModel):
    """Answer to an upload: where to watch the indexing job."""

    id: int
    status: VideoStatus
    status_url: str
    duplicate: bool = Field(description="the same bytes were already uploaded; this is that video")


class SegmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    """A matching time range, in seconds of the query and of the result."""

    query_start: float
    query_end: float
    target_start: float
    target_end: float
    score: float | None = Field(None, description="mean frame similarity along the segment")


class SearchHitPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    video_id: int
    score: float
    rank: int
    title: str | None = None
    external_id: str | None = None
    segments: list[SegmentPublic]


class SearchResultsPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    query_video_id: int | None = Field(None, description="the indexed query video, if any")
    k: int
    min_score: float | None
    count: int
    data: list[SearchHitPublic]
    took_ms: float


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    indexed_videos: int
    indexed_vectors: int
