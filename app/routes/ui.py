"""The web UI: server-rendered pages over the same catalog, search and match graph as the API.

Pages: the library (upload, list), a video (player, details, matches), a pair side by side
(compare), and duplicate groups. They read through the same functions the API routes use; their
scripts (app/ui/static) call the API itself for uploads and exports. With keys required, a key
typed once on /login is kept in an HttpOnly cookie, which the API routes also accept from the
pages (app.auth.cookie_key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from app.auth import KEY_COOKIE, authorize, cookie_key
from app.deps import BackendDep, SessionDep, SettingsDep
from app.errors import describe_validation_errors
from app.metadata import MetadataLimits
from app.routes.duplicates import Tier, find_groups
from app.routes.params import MinScore, VideoIdPath
from app.schemas import MAX_ID, VideoPublic, VideoUpdate
from app.ui import svg
from indexer import catalog, match_graph
from indexer.backend import Backend
from indexer.db import session_scope
from indexer.errors import ServiceError
from indexer.orm import Scope, VideoStatus

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
templates = Jinja2Templates(directory=UI_DIR / "templates")
templates.env.filters["clock"] = lambda seconds: "–" if seconds is None else svg._time(float(seconds))
PAGE_SIZES = (25, 50, 100)

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """A page asked for without a usable key: the browser is sent to /login."""


def reader(request: Request) -> None:
    """Pages need a read key when keys are required: from the cookie, else a trip to /login."""
    if not request.app.state.auth.required:
        return
    try:
        authorize(request, cookie_key(request), Scope.read)
    except HTTPException as error:
        if error.status_code == status.HTTP_401_UNAUTHORIZED:
            raise LoginRequired from None
        raise


Reader = Depends(reader)


def page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("auth_required", request.app.state.auth.required)
    return templates.TemplateResponse(request, name, context, status_code=code)


def not_found(request: Request, message: str) -> HTMLResponse:
    return page(request, "error.html", status.HTTP_404_NOT_FOUND, title="Not found", message=message)


# -- library ----------------------------------------------------------------------------------


def _library(session: SessionDep, q: str | None, status_filter: str, page_size: int, offset: int) -> dict[str, Any]:
    rows, count = catalog.list_videos(
        session=session,
        status=status_filter or None,
        text=q or None,
        limit=page_size,
        offset=offset,
        newest_first=True,
    )
    videos = [VideoPublic.model_validate(v) for v in rows]
    return {
        "videos": videos,
        "count": count,
        "q": q or "",
        "status_filter": status_filter,
        "page_size": page_size,
        "offset": offset,
        "statuses": [s.value for s in VideoStatus],
        "page_sizes": PAGE_SIZES,
        "busy": any(v.status in (VideoStatus.queued, VideoStatus.processing) for v in videos),
    }


Text = Annotated[str | None, Query(max_length=200)]
# "" is the form's "any"; anything else must be a status.
StatusFilter = Annotated[Literal["", "queued", "processing", "ready", "failed"], Query(alias="status")]
PageSize = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]


@router.get("/", response_class=HTMLResponse, dependencies=[Reader])
def library_page(
    request: Request,
    session: SessionDep,
    q: Text = None,
    status_filter: StatusFilter = "",
    page_size: PageSize = 25,
    offset: Offset = 0,
) -> HTMLResponse:
    return page(request, "library.html", **_library(session, q, status_filter, page_size, offset))


@router.get("/ui/rows", response_class=HTMLResponse, dependencies=[Reader])
def library_rows(
    request: Request,
    session: SessionDep,
    q: Text = None,
    status_filter: StatusFilter = "",
    page_size: PageSize = 25,
    offset: Offset = 0,
) -> HTMLResponse:
    """The list alone, for the page's filters, paging and refresh while videos are indexed."""
    return page(request, "library_rows.html", **_library(session, q, status_filter, page_size, offset))


# -- one video --------------------------------------------------------------------------------


async def _matches(backend: Backend, video_id: int) -> list[dict[str, Any]]:
    library = backend.require_library()
    found = await backend.search.run(
        backend.search.by_video, video_id, k=backend.settings.default_k, min_score=None, library=library
    )
    return [
        {"hit": m, "segments": [match_graph.segment_dict(s) for s in m.segments], "video_id": m.video_id}
        for m in found.data
    ]


@router.get("/ui/videos/{video_id}", response_class=HTMLResponse, dependencies=[Reader])
async def video_page(request: Request, video_id: VideoIdPath, backend: BackendDep) -> HTMLResponse:
    video = await run_in_threadpool(_public, backend, video_id)
    if video is None:
        return not_found(request, f"There is no video {video_id}; it may have been deleted.")
    matches: list[dict[str, Any]] = []
    problem = None
    if video.status == VideoStatus.ready:
        try:
            matches = await _matches(backend, video_id)
        except ServiceError as error:  # not loaded yet, or re-indexed meanwhile
            problem = str(error)
        others = await run_in_threadpool(_videos, backend, [m["video_id"] for m in matches])
        matches = [m for m in matches if m["video_id"] in others]
        for match in matches:
            match["video"] = other = others[match["video_id"]]
            match["timeline"] = svg.timeline(match["segments"], video.duration or 0.0, other.duration or 0.0)
    return page(
        request,
        "video.html",
        video=video,
        matches=matches,
        problem=problem,
        metadata_text=json.dumps(video.metadata, indent=2, ensure_ascii=False) if video.metadata else "",
    )


def _public(backend: Backend, video_id: int) -> VideoPublic | None:
    with session_scope(backend.sessions) as session:
        video = catalog.get_video(video_id, session=session)
        return None if video is None else VideoPublic.model_validate(video)


def _videos(backend: Backend, video_ids: list[int]) -> dict[int, VideoPublic]:
    with session_scope(backend.sessions) as session:
        rows = catalog.videos_by_ids(video_ids, session=session)
        return {video_id: VideoPublic.model_validate(row) for video_id, row in rows.items()}


@router.post("/ui/videos/{video_id}/details", response_class=HTMLResponse, dependencies=[Depends(reader)])
def save_details(
    request: Request,
    video_id: VideoIdPath,
    session: SessionDep,
    settings: SettingsDep,
    title: Annotated[str, Form(max_length=10_000)] = "",
    external_id: Annotated[str, Form(max_length=10_000)] = "",
    metadata: Annotated[str, Form(max_length=1_000_000)] = "",
) -> HTMLResponse:
    """The details form: validated as PATCH /videos/{id} validates (the same schema and limits)."""
    if request.app.state.auth.required:
        authorize(request, cookie_key(request), Scope.write)
    error = None
    try:
        fields = VideoUpdate.model_validate(
            {"title": title, "external_id": external_id, "metadata": metadata},
            context={"metadata_limits": MetadataLimits.from_settings(settings)},
        )
    except ValidationError as invalid:
        error = describe_validation_errors(invalid.errors())
    video = catalog.get_video(video_id, session=session)
    if video is None:
        return not_found(request, f"There is no video {video_id}; it may have been deleted.")
    if error is None:
        changes = {"title": fields.title, "external_id": fields.external_id, "meta": fields.metadata}
        video = catalog.update_details(video_id, changes, session=session) or video
    public = VideoPublic.model_validate(video)
    return page(
        request,
        "video_details.html",
        video=public,
        saved=error is None,
        error=error,
        title_text=title if error else (public.title or ""),
        external_id_text=external_id if error else (public.external_id or ""),
        metadata_text=metadata
        if error
        else (json.dumps(public.metadata, indent=2, ensure_ascii=False) if public.metadata else ""),
    )


# -- a pair side by side ----------------------------------------------------------------------


@router.get("/ui/compare", response_class=HTMLResponse, dependencies=[Reader])
async def compare_page(
    request: Request,
    backend: BackendDep,
    a: Annotated[int, Query(ge=1, le=MAX_ID)],
    b: Annotated[int, Query(ge=1, le=MAX_ID)],
) -> HTMLResponse:
    first, second = await run_in_threadpool(_public, backend, a), await run_in_threadpool(_public, backend, b)
    if first is None or second is None:
        return not_found(request, f"There is no video {a if first is None else b}.")
    segments, score, tier = await _pair(backend, a, b)
    heat = None
    if first.status == VideoStatus.ready and second.status == VideoStatus.ready and a != b:
        heat = await run_in_threadpool(_heat_map, backend, a, b, segments)
    return page(
        request,
        "compare.html",
        first=first,
        second=second,
        segments=segments,
        score=score,
        tier=tier,
        heat=heat,
        timeline=svg.timeline(segments, first.duration or 0.0, second.duration or 0.0, width=900),
    )


async def _pair(backend: Backend, a: int, b: int) -> tuple[list[dict[str, Any]], float | None, str | None]:
    """The pair's matched ranges (a -> b): the stored edge, else a search of `a` that finds `b`."""
    with session_scope(backend.sessions) as session:
        stored = match_graph.pair(a, b, session=session)
    if stored is not None:
        return stored.segments, stored.score, stored.tier
    try:
        matches = await _matches(backend, a)
    except ServiceError:
        return [], None, None
    for match in matches:
        if match["video_id"] == b:
            return match["segments"], match["hit"].score, match["hit"].tier
    return [], None, None


def _heat_map(backend: Backend, a: int, b: int, segments: list[dict[str, Any]]) -> Any:
    from indexer.feature_store import CorruptFeaturesError, MissingFeaturesError

    store = backend.require_library().store
    try:
        first, second = store.get(a), store.get(b)
    except (MissingFeaturesError, CorruptFeaturesError):
        return None
    similarity = first.frame_vectors @ second.frame_vectors.T
    return svg.heat_map(similarity, first.timestamps, second.timestamps, segments)


# -- duplicate groups -------------------------------------------------------------------------


@router.get("/ui/duplicates", response_class=HTMLResponse, dependencies=[Reader])
def duplicates_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    min_score: MinScore = None,
    tier: Annotated[Tier | None, Query()] = None,
) -> HTMLResponse:
    chosen_tier = tier.value if tier is not None else None
    if min_score is None and chosen_tier is None:
        chosen_tier = settings.duplicates_tier
    result = find_groups(session, min_score, chosen_tier)
    query = "&".join(
        f"{name}={quote(str(value))}"
        for name, value in (("min_score", min_score), ("tier", chosen_tier))
        if value is not None
    )
    names = {v.id: v.title or v.filename or f"video {v.id}" for g in result.data for v in g.videos}
    return page(
        request,
        "duplicates.html",
        result=result,
        names=names,
        min_score=min_score,
        tier=chosen_tier,
        tiers=match_graph.TIERS,
        query=query,
    )


# -- key ----------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> HTMLResponse:
    return page(request, "login.html", next=_local(next), error=None, auth_required=False)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    key: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the key once, then keep it in an HttpOnly, same-site cookie."""
    try:
        authorize(request, key.strip(), Scope.read)
    except HTTPException as error:
        reason = str(error.detail).split(";")[0]  # not the API's hint about headers
        return page(request, "login.html", error.status_code, next=_local(next), error=reason, auth_required=False)
    response = RedirectResponse(_local(next), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        KEY_COOKIE,
        key.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=30 * 24 * 3600,
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(KEY_COOKIE)
    return response


def _local(target: str) -> str:
    """Only paths of this site are followed after a login (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def install_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static")

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, _: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=status.HTTP_303_SEE_OTHER)
