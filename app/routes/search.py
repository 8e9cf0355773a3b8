"""/search: near duplicates of an indexed video, or of an uploaded clip (which is not stored)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.deps import ComponentsDep, LibraryDep, RuntimeDep
from app.errors import Unprocessable
from app.routes.videos import ERRORS
from app.schemas import Message, SearchResults
from app.uploads import receive_video_form

router = APIRouter(prefix="/search", tags=["search"])

K = Annotated[int | None, Query(ge=1, description="results wanted (default from settings)")]
MIN_SCORE = Annotated[float | None, Query(ge=-1.0, le=1.0, description="drop results scoring below")]

CLIP_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "the clip"}},
                }
            }
        },
    }
}


def _k(runtime: RuntimeDep, k: int | None) -> int:
    settings = runtime.settings
    k = settings.default_k if k is None else k
    if k > settings.max_k:
        raise Unprocessable(f"k must be at most {settings.max_k}")
    return k


@router.get(
    "",
    response_model=SearchResults,
    responses={404: {"model": Message}, 409: {"model": Message}, 503: {"model": Message}},
)
async def search_by_video(
    video_id: int, runtime: RuntimeDep, library: LibraryDep, k: K = None, min_score: MIN_SCORE = None
) -> SearchResults:
    """Videos sharing footage with an indexed video, best first, with the matching time ranges."""
    search = runtime.search
    return await search.run(search.by_video, video_id, k=_k(runtime, k), min_score=min_score, library=library)


@router.post("", response_model=SearchResults, openapi_extra=CLIP_BODY, responses={**ERRORS, 503: {"model": Message}})
async def search_by_clip(
    request: Request,
    runtime: RuntimeDep,
    library: LibraryDep,
    components: ComponentsDep,
    k: K = None,
    min_score: MIN_SCORE = None,
) -> SearchResults:
    """Search with an uploaded clip; the clip is embedded, searched with, and thrown away."""
    wanted = _k(runtime, k)
    form = await receive_video_form(
        request,
        store=runtime.uploads,
        max_file_bytes=runtime.settings.max_upload_bytes,
        max_field_bytes=runtime.settings.max_field_bytes,
    )
    search = runtime.search
    try:
        return await search.run(
            search.by_clip,
            form.file.path,
            k=wanted,
            min_score=min_score,
            library=library,
            embedder=components.embedder,
        )
    finally:
        form.file.discard()
