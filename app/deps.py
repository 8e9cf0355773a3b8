"""Typed dependencies shared by the routes: a route's signature says what it needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.admission import SearchAdmission, Ticket
from app.auth import require_scope
from indexer.backend import Backend
from indexer.components import Components
from indexer.db import session_scope
from indexer.ingest import Ingest
from indexer.library import Library
from indexer.metrics import Metrics
from indexer.orm import Scope
from indexer.search_service import SearchService
from indexer.settings import Settings
from indexer.thumbnails import Thumbnails
from indexer.upload_store import UploadStore


def get_backend(request: Request) -> Backend:
    return request.app.state.backend


BackendDep = Annotated[Backend, Depends(get_backend)]


def get_settings(backend: BackendDep) -> Settings:
    return backend.settings


def get_session(backend: BackendDep) -> Iterator[Session]:
    with session_scope(backend.sessions) as session:
        yield session


def get_library(backend: BackendDep) -> Library:
    """The loaded index and store; 503 while start-up is still loading them."""
    return backend.require_library()


def require_ready(backend: BackendDep) -> None:
    """503 with Retry-After until the model and the index are loaded (for good after a failed
    start): for routes that would otherwise accept work nothing may ever do."""
    backend.require_library()


def get_components(backend: BackendDep) -> Components:
    return backend.require_components()


def get_ingest(backend: BackendDep) -> Ingest:
    return backend.ingest


def get_search(backend: BackendDep) -> SearchService:
    return backend.search


def get_uploads(backend: BackendDep) -> UploadStore:
    return backend.uploads


def get_thumbnails(backend: BackendDep) -> Thumbnails:
    return backend.thumbnails


def get_metrics(backend: BackendDep) -> Metrics:
    return backend.metrics


def get_admission(request: Request) -> SearchAdmission:
    return request.app.state.admission


async def admit_search(admission: Annotated[SearchAdmission, Depends(get_admission)]) -> AsyncIterator[Ticket]:
    """A place among the searches in progress, or 503 with Retry-After (app/admission.py)."""
    ticket = admission.video.reserve()
    try:
        yield ticket
    finally:
        ticket.release()


async def admit_clip(admission: Annotated[SearchAdmission, Depends(get_admission)]) -> AsyncIterator[Ticket]:
    """A place among the clip searches in progress (taken before the upload), or 503 with Retry-After."""
    ticket = admission.clip.reserve()
    try:
        yield ticket
    finally:
        ticket.release()


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the session commits before the response is sent, so a client that acts on
# an answer (create, then revoke) always finds what the answer reported.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
LibraryDep = Annotated[Library, Depends(get_library)]
ComponentsDep = Annotated[Components, Depends(get_components)]
IngestDep = Annotated[Ingest, Depends(get_ingest)]
SearchDep = Annotated[SearchService, Depends(get_search)]
UploadsDep = Annotated[UploadStore, Depends(get_uploads)]
ThumbnailsDep = Annotated[Thumbnails, Depends(get_thumbnails)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
# scope="function": the place is given back as soon as the route returns, not after the answer is sent.
SearchTicket = Annotated[Ticket, Depends(admit_search, scope="function")]
ClipTicket = Annotated[Ticket, Depends(admit_clip, scope="function")]

# Route guards, used as `dependencies=[RequireRead]` (app/auth.py): the scope a route needs.
RequireRead = Depends(require_scope(Scope.read))
RequireWrite = Depends(require_scope(Scope.write))
RequireAdmin = Depends(require_scope(Scope.admin))
