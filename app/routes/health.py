"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.deps import BackendDep, MetricsDep
from app.schemas import Health, Message, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process answers (cheap; says nothing about the index)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Message}})
def readyz(backend: BackendDep) -> Readiness:
    """200 once the model and the index are loaded and reconciled; 503 before (or if start-up failed)."""
    library = backend.require_library()
    videos, vectors = library.size()
    return Readiness(status="ready", indexed_videos=videos, indexed_vectors=vectors)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(registry: MetricsDep) -> Response:
    body, content_type = await run_in_threadpool(registry.render)
    return Response(content=body, media_type=content_type)
