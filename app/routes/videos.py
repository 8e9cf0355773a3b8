"""/videos: upload, inspect, list and delete videos."""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

from app.deps import (
    BackendDep,
    IngestDep,
    LibraryDep,
    MetricsDep,
    RequireAdmin,
    RequireRead,
    RequireWrite,
    SessionDep,
    SettingsDep,
    UploadsDep,
    require_ready,
)
from app.metadata import NO_NUL_PATTERN, MetadataLimits, nesting_depth
from app.routes.params import ExternalIdFilter, Limit, Offset, Sha256Filter, VideoIdPath
from app.schemas import (
    EXTERNAL_ID_MAX_LENGTH,
    PRINTABLE_PATTERN,
    TITLE_MAX_LENGTH,
    InvalidRequest,
    Message,
    VideoAccepted,
    VideoCreate,
    VideoPublic,
    VideosPublic,
    VideoUpdate,
)
from app.uploads import receive_video_form
from indexer import catalog
from indexer.backend import Backend
from indexer.db import session_scope
from indexer.errors import Conflict, NotFound
from indexer.orm import Video, VideoStatus

INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidRequest, "description": "invalid parameters or fields, or content refused"}
}
router = APIRouter(prefix="/videos", tags=["videos"], responses=INVALID)

# Written into components by app.openapi (it depends on the metadata limits of the settings).
METADATA_VALUE_REF = "#/components/schemas/MetadataValue"
# The file part: declared video types are what the service expects (anything else not clearly
# another kind of file is judged by decoding it, see app.uploads).
VIDEO_PART = {"contentType": "video/*, application/octet-stream"}


def video_form(file_description: str, properties: dict[str, Any], encoding: dict[str, Any]) -> dict[str, Any]:
    """openapi_extra for a multipart body with a video in `file`: it is parsed by hand (streamed to
    disk, size-limited), so its schema is declared here."""
    file = {"type": "string", "format": "binary", "description": file_description}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": file, **properties},
                        "additionalProperties": False,
                    },
                    "encoding": {"file": VIDEO_PART, **encoding},
                }
            },
        }
    }


UPLOAD_BODY = video_form(
    "the video",
    {
        "title": {"type": "string", "maxLength": TITLE_MAX_LENGTH, "pattern": PRINTABLE_PATTERN},
        "external_id": {"type": "string", "maxLength": EXTERNAL_ID_MAX_LENGTH, "pattern": PRINTABLE_PATTERN},
        "metadata": {
            "type": "object",
            "additionalProperties": {"$ref": METADATA_VALUE_REF},
            "propertyNames": {"pattern": NO_NUL_PATTERN},
            "description": "a JSON object, kept as is; at most HAPVR_MAX_METADATA_BYTES of JSON, "
            "HAPVR_MAX_METADATA_DEPTH levels deep, numbers within ±(10^HAPVR_MAX_METADATA_INT_DIGITS - 1), "
            "no NaN or Infinity, no NUL in strings",
        },
    },
    {"metadata": {"contentType": "application/json"}},
)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Message, "description": "malformed multipart body, or an empty file"},
    413: {"model": Message, "description": "upload over the size limit"},
    415: {"model": Message, "description": "not multipart, or the file is declared as something other than video"},
    **INVALID,
    503: {"model": Message, "description": "the service is not ready (still loading, or its start failed)"},
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=VideoAccepted,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"model": VideoAccepted, "description": "these bytes are already indexed"}, **ERRORS},
    summary="Upload a video to index",
    dependencies=[RequireWrite, Depends(require_ready)],  # refused before the body is read
)
async def upload_video(
    request: Request, settings: SettingsDep, uploads: UploadsDep, ingest: IngestDep, metrics: MetricsDep
) -> JSONResponse:
    """Store the upload and queue it for indexing; identical bytes return the existing video."""
    try:
        form = await receive_video_form(
            request,
            store=uploads,
            max_file_bytes=settings.max_upload_bytes,
            max_field_bytes=settings.max_field_bytes,
            text_fields=frozenset(VideoCreate.model_fields),
        )
    except HTTPException:
        metrics.uploads.labels("rejected").inc()
        raise
    try:
        fields = VideoCreate.model_validate(
            form.fields, context={"metadata_limits": MetadataLimits.from_settings(settings)}
        )
    except ValidationError as error:
        form.file.discard()
        metrics.uploads.labels("rejected").inc()
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None
    details = catalog.VideoDetails(title=fields.title, external_id=fields.external_id, meta=fields.metadata)
    accepted = await run_in_threadpool(ingest.accept, form.file, details)
    video = accepted.video
    status_url = str(request.url_for("get_video", video_id=video.id).path)
    body = VideoAccepted(
        id=video.id, status=VideoStatus(video.status), status_url=status_url, duplicate=accepted.duplicate
    )
    code = status.HTTP_200_OK if video.status == catalog.READY else status.HTTP_202_ACCEPTED
    return JSONResponse(body.model_dump(mode="json"), status_code=code, headers={"Location": status_url})


@router.post(
    "/{video_id}/reindex",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=VideoAccepted,
    responses={404: {"model": Message}, 409: {"model": Message}, 503: {"model": Message}},
    summary="Index a video again from its stored upload",
    dependencies=[RequireAdmin, Depends(require_ready)],
)
def reindex_video(video_id: VideoIdPath, request: Request, ingest: IngestDep) -> JSONResponse:
    """Queue a ready or failed video to be embedded again (409 while it is queued or being indexed)."""
    video = ingest.reindex(video_id)
    status_url = str(request.url_for("get_video", video_id=video.id).path)
    body = VideoAccepted(id=video.id, status=VideoStatus(video.status), status_url=status_url, duplicate=False)
    return JSONResponse(
        body.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED, headers={"Location": status_url}
    )


@router.get("/{video_id}", response_model=VideoPublic, responses={404: {"model": Message}}, dependencies=[RequireRead])
def get_video(video_id: VideoIdPath, session: SessionDep) -> VideoPublic:
    video = catalog.get_video(video_id, session=session)
    if video is None:
        raise NotFound(f"video {video_id} not found")
    return VideoPublic.model_validate(video)


@router.get("", response_model=VideosPublic, dependencies=[RequireRead])
def list_videos(
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    status: VideoStatus | None = None,
    external_id: ExternalIdFilter = None,
    sha256: Sha256Filter = None,
) -> VideosPublic:
    """Videos oldest first; `count` is the total under the filters, for pagination."""
    rows, count = catalog.list_videos(
        session=session,
        status=status.value if status else None,
        external_id=external_id,
        sha256=sha256,
        limit=limit,
        offset=offset,
    )
    return VideosPublic(data=[VideoPublic.model_validate(v) for v in rows], count=count, limit=limit, offset=offset)


@router.delete(
    "/{video_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": Message}, 503: {"model": Message}},
    # Admin, not write: write keys go to uploaders and clip searchers, who must not empty the library.
    dependencies=[RequireAdmin],
)
def delete_video(video_id: VideoIdPath, ingest: IngestDep, library: LibraryDep, backend: BackendDep) -> Response:
    """Remove the video from the index, the feature store, the catalog and (if unshared) the upload
    store, with its pictures and its matches."""
    sha256 = _stored_video(video_id, backend).sha256
    ingest.delete(video_id, library=library)
    backend.thumbnails.remove(sha256)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch(
    "/{video_id}",
    response_model=VideoPublic,
    responses={400: {"model": Message}, 404: {"model": Message}, 413: {"model": Message}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "title": {
                                "type": ["string", "null"],
                                "maxLength": TITLE_MAX_LENGTH,
                                "pattern": PRINTABLE_PATTERN,
                            },
                            "external_id": {
                                "type": ["string", "null"],
                                "maxLength": EXTERNAL_ID_MAX_LENGTH,
                                "pattern": PRINTABLE_PATTERN,
                            },
                            "metadata": {
                                "type": ["object", "null"],
                                "additionalProperties": {"$ref": METADATA_VALUE_REF},
                                "propertyNames": {"pattern": NO_NUL_PATTERN},
                            },
                        },
                        "additionalProperties": False,
                    }
                }
            },
        }
    },
    summary="Change a video's title, external id or metadata",
    dependencies=[RequireWrite],
)
async def update_video(
    video_id: VideoIdPath, request: Request, settings: SettingsDep, backend: BackendDep
) -> VideoPublic:
    """Replace the fields sent (null or "" clears one); the others are kept. Same limits as an upload."""
    limits = MetadataLimits.from_settings(settings)
    payload = _json_object(await request.body(), limits, settings.max_field_bytes)
    try:
        fields = VideoUpdate.model_validate(payload, context={"metadata_limits": limits})
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None
    changes = {("meta" if name == "metadata" else name): getattr(fields, name) for name in fields.model_fields_set}

    def update() -> VideoPublic:
        with session_scope(backend.sessions) as session:
            video = catalog.update_details(video_id, changes, session=session)
            if video is None:
                raise NotFound(f"video {video_id} not found")
            return VideoPublic.model_validate(video)

    return await run_in_threadpool(update)


def _json_object(body: bytes, limits: MetadataLimits, room: int) -> dict[str, Any]:
    """A JSON body, checked for size and depth before the parser sees it (the metadata limits, with
    room for the other fields and one level more); its fields are validated by the schema."""
    if len(body) > limits.max_bytes + room:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the body is over {limits.max_bytes + room} bytes")
    try:
        text = body.decode("utf-8")
        depth = nesting_depth(text)
        if depth > limits.max_depth + 1:
            raise ValueError(f"it nests {depth} levels deep; the limit is {limits.max_depth + 1}")
        payload = json.loads(text)
    except ValueError as error:  # UnicodeDecodeError, json.JSONDecodeError, too deep, too long an integer
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the body must be a JSON object: {error}") from None
    if not isinstance(payload, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body must be a JSON object")
    return payload


def _stored_video(video_id: int, backend: Backend) -> Video:
    with session_scope(backend.sessions) as session:
        video = catalog.get_video(video_id, session=session)
        if video is None:
            raise NotFound(f"video {video_id} not found")
        session.expunge(video)
        return video


def _picture(video_id: int, backend: Backend, kind: str) -> FileResponse:
    video = _stored_video(video_id, backend)
    if video.status != catalog.READY:
        raise Conflict(f"video {video_id} is {video.status}; its pictures are made once it is ready")
    from model.video import VideoDecodeError

    make = backend.thumbnails.poster if kind == "poster" else backend.thumbnails.strip
    try:
        path = make(video.sha256, backend.uploads.resolve(video.storage_path), video.duration)
    except (VideoDecodeError, FileNotFoundError) as error:
        raise Conflict(f"no picture of video {video_id}: {error}") from None
    # The same id may hold other bytes after a re-upload, so caches revalidate (ETag from the file).
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


@router.get(
    "/{video_id}/thumbnail",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Message}, 409: {"model": Message}},
    summary="A poster frame of a ready video (JPEG)",
    dependencies=[RequireRead],
)
def video_thumbnail(video_id: VideoIdPath, backend: BackendDep) -> FileResponse:
    return _picture(video_id, backend, "poster")


@router.get(
    "/{video_id}/strip",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Message}, 409: {"model": Message}},
    summary="Frames spread evenly over a ready video, side by side (JPEG), for timelines",
    dependencies=[RequireRead],
)
def video_strip(video_id: VideoIdPath, backend: BackendDep) -> FileResponse:
    return _picture(video_id, backend, "strip")


@router.get(
    "/{video_id}/file",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"video/*": {}, "application/octet-stream": {}},
            "description": "the stored upload, as uploaded (octet-stream when its name is not a video's)",
        },
        206: {"content": {"video/*": {}, "application/octet-stream": {}}, "description": "the byte range asked for"},
        404: {"model": Message},
        416: {"description": "the range lies outside the file"},
    },
    summary="The stored video file; answers HTTP Range requests, so players can seek",
    dependencies=[RequireRead],
)
def video_file(video_id: VideoIdPath, backend: BackendDep) -> FileResponse:
    video = _stored_video(video_id, backend)
    path = backend.uploads.resolve(video.storage_path)
    if not path.is_file():
        raise NotFound(f"the stored file of video {video_id} is missing")
    media_type = mimetypes.guess_type(video.filename or path.name)[0] or mimetypes.guess_type(path.name)[0]
    if media_type is None or not media_type.startswith("video/"):
        media_type = "application/octet-stream"
    return FileResponse(
        path, media_type=media_type, filename=video.filename or path.name, content_disposition_type="inline"
    )
