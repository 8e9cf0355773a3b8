"""The FastAPI application: settings, back end, error handlers and routers, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware

from app.admission import SearchAdmission
from app.auth import API_KEY_HEADER, Authenticator, document_security, ensure_admin_key
from app.docs import install_docs
from app.errors import install_error_handlers, install_rejection_counter
from app.openapi import install_openapi
from app.routes import duplicates, health, keys, search, videos
from app.routes.ui import install_ui
from indexer.backend import Backend, ComponentsFactory
from indexer.settings import Settings

DESCRIPTION = """Near-duplicate video search. Upload videos; find, for any indexed video or
uploaded clip, the other videos that contain the same footage, ranked, with the matching time
ranges. Errors are JSON objects with a `detail` message."""


def create_app(settings: Settings | None = None, components_factory: ComponentsFactory | None = None) -> FastAPI:
    """Build the app; the backend starts with the app's lifespan (model and index load in the background)."""
    settings = settings or Settings()
    backend = Backend(settings) if components_factory is None else Backend(settings, components_factory)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(backend.start)
        try:
            await run_in_threadpool(ensure_admin_key, settings, backend.sessions)
            yield
        finally:
            await run_in_threadpool(backend.close)

    # /docs is served by install_docs (assets from a package, so it works offline); no ReDoc,
    # which would need a CDN.
    app = FastAPI(
        title="hapvr-search",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.backend = backend
    app.state.auth = Authenticator(settings, backend.sessions)
    app.state.admission = SearchAdmission(
        search_threads=settings.search_threads,
        search_queue=settings.search_queue,
        clip_searches=settings.clip_searches,
        clip_queue=settings.clip_queue,
    )
    install_error_handlers(app)
    if settings.cors_origins:
        # Outside every layer but the counter, so that 401, 429 and every error carry the CORS headers
        # a browser needs to read them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", API_KEY_HEADER, "Content-Type"],
            expose_headers=["Location", "Retry-After", "WWW-Authenticate"],
            max_age=600,
        )
    install_rejection_counter(app)
    app.include_router(videos.router)
    app.include_router(search.router)
    app.include_router(duplicates.router)
    app.include_router(keys.router)
    app.include_router(health.router)
    install_docs(app)
    install_ui(app)
    install_openapi(app, settings)
    document_security(app, required=settings.auth_required)
    return app
