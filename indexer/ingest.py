"""Accepting uploads into the catalog, re-indexing and deleting videos: the write side of the API.

Uploads are deduplicated by sha256. The file is committed to the content-addressed store
before its row is written, and a delete removes the row before the file; one lock orders the
two inside this process, so a file in use is never removed under a fresh upload of the same
bytes. A crash between the commit and the insert leaves a file no row refers to: start-up
sweeps those (`remove_orphan_uploads`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from indexer import catalog
from indexer.db import session_scope
from indexer.errors import Conflict, NotFound, NotReady, Unprocessable
from indexer.library import Library
from indexer.metrics import Metrics
from indexer.orm import Video
from indexer.queue import JobPublisher
from indexer.upload_store import ReceivedFile, UploadStore

log = logging.getLogger(__name__)


class UploadMissing(Conflict):
    """A video's stored upload is gone: it cannot be embedded again."""


@dataclass(frozen=True)
class Accepted:
    video: Video
    duplicate: bool


class Ingest:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        uploads: UploadStore,
        queue: JobPublisher,
        metrics: Metrics,
        probe: Callable[[Path], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._uploads = uploads
        self._queue = queue
        self._metrics = metrics
        self._probe = probe
        self._files = threading.Lock()

    def set_probe(self, probe: Callable[[Path], None]) -> None:
        """Install the header check once the decoder is loaded (uploads are refused before that)."""
        self._probe = probe

    def accept(self, received: ReceivedFile, details: catalog.VideoDetails) -> Accepted:
        """Catalog an upload (or find its twin); the scratch file is consumed either way.

        NotReady until the decoder is loaded: nothing unchecked is queued (and after a failed
        start nothing is queued that no worker would ever take).
        """
        try:
            if self._probe is None:
                raise NotReady("the service is not ready for uploads yet; retry shortly")
            try:
                self._probe(received.path)
            except ValueError as error:  # model.video.VideoDecodeError: a reason for the user
                raise Unprocessable(f"not a usable video: {error}") from None
        except Exception:
            received.discard()
            self._metrics.uploads.labels("rejected").inc()
            raise

        with self._files:
            with session_scope(self._sessions) as session:
                existing = catalog.get_by_sha256(received.sha256, session=session)
                if existing is not None:
                    return self._twin(existing, received, session=session)
            final = self._uploads.commit(received.path, received.sha256, received.suffix)
            stored = self._uploads.relative(final)
            try:
                with session_scope(self._sessions) as session:
                    video = catalog.add_video(
                        catalog.NewVideo(
                            sha256=received.sha256,
                            storage_path=stored,
                            size_bytes=received.size,
                            content_type=received.content_type,
                            filename=received.filename,
                            details=details,
                        ),
                        session=session,
                    )
            except IntegrityError:
                # Another process catalogued the same bytes a moment ago: answer with its row.
                with session_scope(self._sessions) as session:
                    existing = catalog.get_by_sha256(received.sha256, session=session)
                    if existing is None:
                        raise
                    accepted = self._twin(existing, received, session=session)
                if stored != accepted.video.storage_path:
                    self._forget_file(stored)
                return accepted
            except BaseException:
                self._forget_file(stored)
                raise
        self._queue.enqueue(video.id)
        self._metrics.uploads.labels("accepted").inc()
        log.info("video %d queued (%s, %d bytes)", video.id, received.filename, received.size)
        return Accepted(video=video, duplicate=False)

    def _twin(self, existing: Video, received: ReceivedFile, *, session: Session) -> Accepted:
        """The same bytes again: a failed video gets another try, anything else is returned as is."""
        if existing.status == catalog.FAILED:
            # The stored copy may have been what broke (or gone): keep the fresh bytes.
            final = self._uploads.commit(received.path, received.sha256, received.suffix)
            previous, existing.storage_path = existing.storage_path, self._uploads.relative(final)
            if previous != existing.storage_path:
                self._uploads.remove(previous)
            catalog.reindex(existing.id, session=session)
            session.flush()
            session.refresh(existing)
            self._queue.enqueue(existing.id)
            self._metrics.uploads.labels("requeued").inc()
        else:
            received.discard()
            self._metrics.uploads.labels("duplicate").inc()
        return Accepted(video=existing, duplicate=True)

    def reindex(self, video_id: int) -> Video:
        """Queue a ready or failed video to be embedded again from its stored upload."""
        with session_scope(self._sessions) as session:
            video = queue_reindex(video_id, session=session, uploads=self._uploads)
        self._queue.enqueue(video_id)
        log.info("video %d queued for re-indexing", video_id)
        return video

    def remove_orphan_uploads(self, *, min_age_s: float) -> int:
        """Delete stored uploads that no row refers to and that have lain unchanged for `min_age_s`
        seconds; returns how many. Files are listed before the rows are read, so a file whose row
        is inserted meanwhile is never taken (and inside this process the lock orders them)."""
        with self._files:
            candidates = list(self._uploads.stored_files(min_age_s=min_age_s))
            with session_scope(self._sessions) as session:
                wanted = catalog.storage_paths(session=session)
            orphans = [stored for stored in candidates if stored not in wanted]
            for stored in orphans:
                self._uploads.remove(stored)
        return len(orphans)

    def _forget_file(self, stored: str) -> None:
        """Remove a committed upload that no row refers to (after a failed insert)."""
        with session_scope(self._sessions) as session:
            if not catalog.storage_path_in_use(stored, session=session):
                self._uploads.remove(stored)

    def delete(self, video_id: int, *, library: Library) -> None:
        """Remove a video from catalog, index, feature store and (if unshared) the upload store.

        The row goes first: once it is gone no search returns the video, and whatever a crash
        leaves behind in the store or index is dropped by the next start's reconciliation.
        """
        with self._files:
            with session_scope(self._sessions) as session:
                video = catalog.delete_video(video_id, session=session)
                if video is None:
                    raise NotFound(f"video {video_id} not found")
                stored = video.storage_path
            library.remove(video_id)
            self._forget_file(stored)
        library.persist()
        log.info("video %d deleted", video_id)


def queue_reindex(video_id: int, *, session: Session, uploads: UploadStore) -> Video:
    """Put a ready or failed video back on the queue with a fresh start (the caller commits, then
    announces the job).

    NotFound when there is no such video; Conflict when it is queued or being indexed already, or
    its stored upload is gone (only a new upload can bring it back). Searches stop returning it at
    once (it is no longer ready); the job replaces its features and vectors.
    """
    video = catalog.get_video(video_id, session=session)
    if video is None:
        raise NotFound(f"video {video_id} not found")
    if not uploads.resolve(video.storage_path).is_file():
        raise UploadMissing(f"the stored upload of video {video_id} is missing; upload the file again")
    if not catalog.reindex(video_id, session=session):
        raise Conflict(f"video {video_id} is already {video.status}; re-index it once it is ready or failed")
    session.refresh(video)
    return video
