"""The indexing job: one importable function that takes a claimed video from queued to ready.

Whatever queue hands out the job (the embedded catalog queue now, a Redis queue when
deployed), the work is the same and idempotent: features are replaced atomically, the
video's old vectors are removed before its new ones are added, and the row turns ready only
after the catalog, the feature store and the index are durable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from app import catalog
from app.db import session_scope
from app.library import Library
from app.metrics import Metrics
from app.storage import UploadStore

if TYPE_CHECKING:
    from app.components import Embedder

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    sessions: sessionmaker[Session]
    uploads: UploadStore
    embedder: Embedder
    library: Library
    metrics: Metrics
    max_attempts: int


def _decode_error_type() -> type[Exception]:
    from model.video import VideoDecodeError

    return VideoDecodeError


def index_video(video_id: int, *, ctx: JobContext) -> str:
    """Index a video whose row this worker has claimed (status processing); returns the outcome.

    Outcomes: "ready"; "failed" (unusable input, or out of attempts); "retried" (an
    unexpected error with attempts left: the row is queued again); "deleted" (the video was
    deleted while it was being indexed; nothing is kept).
    """
    started = time.perf_counter()
    with session_scope(ctx.sessions) as session:
        video = catalog.get_video(video_id, session=session)
        if video is None or video.status != catalog.PROCESSING:
            ctx.metrics.ingests.labels("deleted").inc()
            return "deleted"
        stored, attempts = video.storage_path, video.attempts

    def still_processing() -> bool:
        with session_scope(ctx.sessions) as check:
            row = catalog.get_video(video_id, session=check)
            return row is not None and row.status == catalog.PROCESSING

    decode_error = _decode_error_type()
    try:
        features = ctx.embedder.embed(ctx.uploads.resolve(stored))
        if not ctx.library.add(video_id, features, still_wanted=still_processing):
            ctx.metrics.ingests.labels("deleted").inc()
            return "deleted"
        ctx.library.persist()
        with session_scope(ctx.sessions) as session:
            marked = catalog.mark_ready(
                video_id,
                session=session,
                duration=features.duration,
                fps=features.source_fps,
                frames_indexed=features.num_frames,
            )
        if not marked:
            # Deleted between indexing and now: take back what this job wrote.
            ctx.library.remove(video_id)
            ctx.metrics.ingests.labels("deleted").inc()
            return "deleted"
    except decode_error as error:
        # Embedding failed before anything was written: only the row changes.
        if not _give_up(video_id, str(error), ctx=ctx):
            return "deleted"
        log.info("video %d failed: %s", video_id, error)
        return "failed"
    except Exception as error:  # noqa: BLE001 - any fault must end in a recorded state, never a stuck row
        log.exception("indexing video %d failed unexpectedly (attempt %d)", video_id, attempts)
        reason = f"internal error while indexing: {type(error).__name__}: {error}"
        _take_back(video_id, ctx=ctx)
        if attempts >= ctx.max_attempts:
            return "failed" if _give_up(video_id, f"{reason} (after {attempts} attempts)", ctx=ctx) else "deleted"
        with session_scope(ctx.sessions) as session:
            requeued = catalog.requeue(video_id, session=session, reason=reason)
        outcome = "retried" if requeued else "deleted"
        ctx.metrics.ingests.labels(outcome).inc()
        return outcome

    elapsed = time.perf_counter() - started
    ctx.metrics.ingests.labels("ready").inc()
    ctx.metrics.ingest_duration.observe(elapsed)
    if features.duration:
        ctx.metrics.ingest_video_seconds.inc(features.duration)
    log.info(
        "video %d ready: %d frames, %.1f s of video in %.2f s",
        video_id, features.num_frames, features.duration or 0.0, elapsed,
    )
    return "ready"


def _take_back(video_id: int, *, ctx: JobContext) -> None:
    """Remove whatever a failed attempt may have written (best effort; start-up reconciles the rest)."""
    try:
        ctx.library.remove(video_id)
    except Exception:  # noqa: BLE001
        log.exception("could not clean up after video %d", video_id)


def _give_up(video_id: int, reason: str, *, ctx: JobContext) -> bool:
    """Mark the video failed; False when it was deleted meanwhile (nothing to mark)."""
    with session_scope(ctx.sessions) as session:
        failed = catalog.mark_failed(video_id, reason, session=session)
    ctx.metrics.ingests.labels("failed" if failed else "deleted").inc()
    return failed
