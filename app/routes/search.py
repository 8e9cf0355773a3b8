"""/search: near duplicates of an indexed video, or of an uploaded clip (which is not stored)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.deps import (
    ClipTicket,
    ComponentsDep,
    LibraryDep,
    RequireRead,
    RequireWrite,
    SearchDep,
    SearchTicket,
    SettingsDep,
    UploadsDep,
)
from app.routes.params import K, MinScore, TierFilter, VideoIdQuery
from app.routes.videos import ERRORS, INVALID, video_form
from app.schemas import Message, SearchResultsPublic
from app.uploads import receive_video_form
from indexer.errors import Unprocessable
from indexer.settings import Settings

router = APIRouter(prefix="/search", tags=["search"], responses=INVALID)

CLIP_BODY = video_form("the clip", {}, {})
BUSY = {
    "model": Message,
    "description": "not ready yet, or too many searches in progress: retry after `Retry-After` seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
}


def _k(settings: Settings, k: int | None) -> int:
    k = settings.default_k if k is None else k
    if k > settings.max_k:
        raise Unprocessable(f"k must be at most {settings.max_k}")
    return k


@router.get(
    "",
    response_model=SearchResultsPublic,
    responses={404: {"model": Message}, 409: {"model": Message}, 503: BUSY},
    dependencies=[RequireRead],
)
async def search_by_video(
    video_id: VideoIdQuery,
    settings: SettingsDep,
    search: SearchDep,
    library: LibraryDep,
    ticket: SearchTicket,
    k: K = None,
    min_score: MinScore = None,
    tier: TierFilter = None,
) -> SearchResultsPublic:
    """Videos sharing footage with an indexed video, best first, with the matching time ranges."""
    async with ticket:
        matches = await search.run(
            search.by_video, video_id, k=_k(settings, k), min_score=min_score, library=library, tiers=tier
        )
    return SearchResultsPublic.model_validate(matches)


@router.post(
    "",
    response_model=SearchResultsPublic,
    openapi_extra=CLIP_BODY,
    responses={**ERRORS, 503: BUSY},
    # Write, though it stores nothing: a clip search embeds an upload, as costly as indexing one.
    dependencies=[RequireWrite],
)
async def search_by_clip(
    request: Request,
    settings: SettingsDep,
    search: SearchDep,
    uploads: UploadsDep,
    library: LibraryDep,
    components: ComponentsDep,
    ticket: ClipTicket,
    k: K = None,
    min_score: MinScore = None,
    tier: TierFilter = None,
) -> SearchResultsPublic:
    """Search with an uploaded clip; the clip is embedded, searched with, and thrown away."""
    wanted = _k(settings, k)
    form = await receive_video_form(
        request,
        store=uploads,
        max_file_bytes=settings.max_upload_bytes,
        max_field_bytes=settings.max_field_bytes,
    )
    try:
        async with ticket:
            matches = await search.run(
                search.by_clip,
                form.file.path,
                k=wanted,
                min_score=min_score,
                library=library,
                embedder=components.embedder,
                max_frames=settings.max_clip_frames,
                tiers=tier,
            )
    finally:
        form.file.discard()
    return SearchResultsPublic.model_validate(matches)
