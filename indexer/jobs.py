"""The indexing job: one importable function that takes a claimed video from queued to ready.

Whatever queue hands out the job (the embedded catalog queue now, a Redis queue when
deployed), the work is the same and idempotent: features are replaced atomically, the
video's old vectors are removed before its new ones are added, and the row turns ready only
after the catalog, the feature store and the index are durable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session, sessionmaker

from indexer import catalog
from indexer.db import session_scope
from indexer.metrics import Metrics
from indexer.upload_store import UploadStore
from indexer.variants import embed_with_window, store_versions

if TYPE_CHECKING:
    from indexer.components import Embedder
    from indexer.feature_store import FeatureStorage
    from model.features import VideoFeatures

log = logging.getLogger(__name__)


class FeatureSink(Protocol):
    """Where a job's features go: the embedded library (store + index) or, for a deployed
    worker, the shared feature store alone (API replicas index what workers store)."""

    def add(
        self,
        video_id: int,
        features: VideoFeatures,
        *,
        still_wanted: Callable[[], bool],
        window: VideoFeatures | None = None,
    ) -> bool:
        """Keep the features (and the inner window's, when there is one: indexer.variants); False
        (and nothing kept) when `still_wanted()` says the video was deleted."""
        ...

    def remove(self, video_id: int) -> None: ...

    def persist(self) -> None:
        """Return once everything added so far is durable."""
        ...


class StoreSink:
    """A FeatureSink over the feature store alone; its writes are durable when they return."""

    def __init__(self, store: FeatureStorage) -> None:
        self._store = store

    def add(
        self,
        video_id: int,
        features: VideoFeatures,
        *,
        still_wanted: Callable[[], bool],
        window: VideoFeatures | None = None,
    ) -> bool:
        store_versions(self._store, video_id, features, window)
        if not still_wanted():
            self._store.delete(video_id)
            return False
        return True

    def remove(self, video_id: int) -> None:
        self._store.delete(video_id)

    def persist(self) -> None:
        """Nothing to do: FeatureStorage.put fsyncs before it returns."""


@dataclass
class JobContext:
    sessions: sessionmaker[Session]
    uploads: UploadStore
    embedder: Embedder
    features: FeatureSink
    metrics: Metrics
    max_attempts: int


def _decode_error_type() -> type[Exception]:
    from model.video import VideoDecodeError

    return VideoDecodeError


def index_video(video_id: int, *, ctx: JobContext) -> str:
    """Index a video whose row this worker has claimed (status processing); returns the outcome.

    Outcomes: "ready"; "failed" (unusable input, or out of attempts); "retried" (an
    unexpected error with attempts left: the row is queued again); "deleted" (the video was
    deleted while it was being indexed; nothing is kept). Attempts cut short by a dying process
    (the row's `interruptions`) are not counted against max_attempts.
    """
    started = time.perf_counter()
    with session_scope(ctx.sessions) as session:
        video = catalog.get_video(video_id, session=session)
        if video is None or video.status != catalog.PROCESSING:
            ctx.metrics.ingests.labels("deleted").inc()
            return "deleted"
        stored, attempts, failures = video.storage_path, video.attempts, catalog.own_failures(video)

    def still_processing() -> bool:
        with session_scope(ctx.sessions) as check:
            row = catalog.get_video(video_id, session=check)
            return row is not None and row.status == catalog.PROCESSING

    decode_error = _decode_error_type()
    try:
        features, window = embed_with_window(ctx.embedder, ctx.uploads.resolve(stored))
        if not ctx.features.add(video_id, features, still_wanted=still_processing, window=window):
            ctx.metrics.ingests.labels("deleted").inc()
            return "deleted"
        ctx.features.persist()
        with session_scope(ctx.sessions) as session:
            marked = catalog.mark_ready(
                video_id,
                session=session,
                duration=features.duration,
                fps=features.source_fps,
                frames_indexed=features.num_frames,
                frames_expected=features.frames_expected,
                warnings=list(features.warnings),
                checkpoint=features.checkpoint,
            )
        if not marked:
            # Deleted between indexing and now: take back what this job wrote.
            ctx.features.remove(video_id)
            ctx.metrics.ingests.labels("deleted").inc()
            return "deleted"
    except decode_error as error:
        # Nothing of this run was written, but a re-indexed video still has its earlier features.
        _take_back(video_id, ctx=ctx)
        if not _give_up(video_id, str(error), ctx=ctx):
            return "deleted"
        log.info("video %d failed: %s", video_id, error)
        return "failed"
    except Exception as error:
        log.exception("indexing video %d failed unexpectedly (attempt %d)", video_id, attempts)
        reason = f"internal error while indexing: {type(error).__name__}: {error}"
        _take_back(video_id, ctx=ctx)
        if failures >= ctx.max_attempts:
            return "failed" if _give_up(video_id, f"{reason} (after {failures} attempts)", ctx=ctx) else "deleted"
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
    for warning in features.warnings:
        log.warning("video %d: %s", video_id, warning)
    log.info(
        "video %d ready: %d frames, %.1f s of video in %.2f s",
        video_id,
        features.num_frames,
        features.duration or 0.0,
        elapsed,
    )
    return "ready"


def _take_back(video_id: int, *, ctx: JobContext) -> None:
    """Remove whatever a failed attempt may have written (best effort; start-up reconciles the rest)."""
    try:
        ctx.features.remove(video_id)
    except Exception:
        log.exception("could not clean up after video %d", video_id)


def _give_up(video_id: int, reason: str, *, ctx: JobContext) -> bool:
    """Mark the video failed; False when it was deleted meanwhile (nothing to mark)."""
    with session_scope(ctx.sessions) as session:
        failed = catalog.mark_failed(video_id, reason, session=session)
    ctx.metrics.ingests.labels("failed" if failed else "deleted").inc()
    return failed
