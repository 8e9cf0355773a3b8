"""API schemas (pydantic), apart from the ORM models they are read from."""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from app.metadata import MetadataLimits, parse_metadata
from indexer.errors import public_message
from indexer.orm import VideoStatus
from model.similarity.calibration import Tier

# Ids are 32-bit on PostgreSQL (the column is `integer`): larger ones are refused by the schema,
# not by the database. Offsets share the bound: no catalog holds more rows than ids.
MAX_ID = 2**31 - 1
TITLE_MAX_LENGTH = 500
EXTERNAL_ID_MAX_LENGTH = 255
# Text without control characters (Unicode category Cc), as JSON Schema writes it: what
# `printable` enforces, declared in the schema so clients and fuzzers know it.
PRINTABLE_PATTERN = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"


def printable(value: str | None) -> str | None:
    """Refuse control characters (NUL, newlines, escapes) in one-line text: PostgreSQL cannot
    store NUL, and the rest break logs, CSV exports and terminals."""
    if value is None:
        return None
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise PydanticCustomError(
                "control_character",
                "must not contain control characters (found U+{code})",
                {"code": f"{ord(char):04X}"},
            )
    return value


class Message(BaseModel):
    detail: str


class FieldError(BaseModel):
    """One invalid part of a request."""

    loc: list[str | int] = Field(description="where: the part of the request, then the field")
    msg: str
    type: str = Field(description="a stable code, e.g. `int_parsing`, `less_than_equal`")


class InvalidRequest(BaseModel):
    """A 422 answer: `detail` says what is wrong in one line; `errors` lists each invalid field
    when the request failed validation (absent when the content itself was refused)."""

    detail: str
    errors: list[FieldError] | None = None


class VideoCreate(BaseModel):
    """The text fields of an upload, beside its file: the one place their limits are written.

    Validate with `context={"metadata_limits": MetadataLimits(...)}` to apply the service's limits.
    """

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str | None, AfterValidator(printable)] = Field(None, max_length=TITLE_MAX_LENGTH)
    external_id: Annotated[str | None, AfterValidator(printable)] = Field(None, max_length=EXTERNAL_ID_MAX_LENGTH)
    metadata: dict[str, Any] | None = Field(None, description="a JSON object, kept as is")

    @field_validator("title", "external_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # Only the empty string clears a field: any other falsy value ({}, [], 0) is not text.
        return None if value == "" else value

    @field_validator("metadata", mode="before")
    @classmethod
    def _parse_json(cls, value: Any, info: ValidationInfo) -> Any:
        """Multipart sends metadata as text: parse it here, under the limits, so its errors read like the others."""
        if value is None or value == "":
            return None
        limits = (info.context or {}).get("metadata_limits", MetadataLimits())
        if not isinstance(value, str):
            try:
                value = json.dumps(value, allow_nan=False)
            except (TypeError, ValueError, RecursionError):
                raise PydanticCustomError("metadata", "must be a JSON object of JSON values") from None
        try:
            return parse_metadata(value, limits)
        except ValueError as error:
            raise PydanticCustomError("metadata", "{reason}", {"reason": str(error)}) from None


class VideoUpdate(VideoCreate):
    """A PATCH of a video's details: the fields sent are replaced (null or "" clears one), the
    others kept. Same limits as an upload's fields."""


class VideoPublic(BaseModel):
    """A catalogued video as clients see it."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    status: VideoStatus
    sha256: str
    title: str | None = None
    external_id: str | None = None
    metadata: dict[str, Any] | None = Field(None, validation_alias="meta")
    # Reasons come from decoders and the OS, which name files by their server paths.
    failure_reason: Annotated[str | None, AfterValidator(lambda r: r and public_message(r))] = None
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
    score: float | None = Field(
        None, description="mean frame similarity (cosine, 0-1) along the range's aligned frames"
    )


class SearchHitPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    video_id: int
    score: float = Field(
        description="calibrated similarity, 0-1: 1 for the same footage, about 0 for unrelated videos; "
        "the same whichever video is the query (see the README for what thresholds mean)"
    )
    raw_score: float = Field(
        description="the similarity network's own score (-1 to 1), both ways averaged, low-information "
        "frames left out; it breaks ties"
    )
    tier: Tier = Field(
        description="duplicate (one video is, nearly whole, inside the other), partial (they share a "
        "segment), related (some aligned footage, too little to call a copy) or none"
    )
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


class DuplicateVideo(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str | None = None
    external_id: str | None = None
    filename: str | None = None
    duration: float | None = None


class DuplicateEdge(BaseModel):
    """Two videos of a group that matched each other: `a`'s search found `b`."""

    a: int
    b: int
    score: float
    tier: str | None = Field(None, description="the match's tier, where search hits carry one")


class DuplicateGroup(BaseModel):
    """A connected component of the match graph: videos linked by matches above the threshold."""

    size: int
    max_score: float
    videos: list[DuplicateVideo]
    edges: list[DuplicateEdge]


class DuplicatesPublic(BaseModel):
    min_score: float | None
    tier: str | None
    count: int = Field(description="groups")
    videos: int = Field(description="videos in all groups together")
    data: list[DuplicateGroup]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    indexed_videos: int
    indexed_vectors: int
