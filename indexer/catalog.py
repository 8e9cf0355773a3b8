"""Catalog operations: the one way the service reads and writes video rows.

Each function takes its session as a keyword argument and leaves committing to the caller
(see indexer.db.session_scope), except where a state change must be atomic on its own (claiming a
job), which the function documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from indexer.orm import Video, VideoStatus, utcnow

QUEUED = VideoStatus.queued.value
PROCESSING = VideoStatus.processing.value
READY = VideoStatus.ready.value
FAILED = VideoStatus.failed.value


@dataclass(frozen=True)
class VideoDetails:
    """What the uploader says about a video (validated by the API's VideoCreate schema)."""

    title: str | None = None
    external_id: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewVideo:
    sha256: str
    storage_path: str
    size_bytes: int
    details: VideoDetails = VideoDetails()
    content_type: str | None = None
    filename: str | None = None


def add_video(new: NewVideo, *, session: Session) -> Video:
    """Insert a queued row; raises IntegrityError when the sha256 is already catalogued."""
    video = Video(
        sha256=new.sha256,
        storage_path=new.storage_path,
        size_bytes=new.size_bytes,
        title=new.details.title,
        external_id=new.details.external_id,
        meta=new.details.meta,
        content_type=new.content_type,
        filename=new.filename,
        status=QUEUED,
        attempts=0,
        interruptions=0,
    )
    session.add(video)
    session.flush()
    return video


def get_video(video_id: int, *, session: Session) -> Video | None:
    return session.get(Video, video_id)


def get_by_sha256(sha256: str, *, session: Session) -> Video | None:
    return session.scalar(select(Video).where(Video.sha256 == sha256))


def list_videos(
    *,
    session: Session,
    status: str | None = None,
    external_id: str | None = None,
    sha256: str | None = None,
    text: str | None = None,
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = False,
) -> tuple[list[Video], int]:
    """One page of videos (oldest first unless `newest_first`) and the total count under the same
    filters; `text` is a case-insensitive substring of the title or the file name."""
    conditions = []
    if status is not None:
        conditions.append(Video.status == status)
    if external_id is not None:
        conditions.append(Video.external_id == external_id)
    if sha256 is not None:
        conditions.append(Video.sha256 == sha256)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(or_(Video.title.ilike(pattern, escape="\\"), Video.filename.ilike(pattern, escape="\\")))
    count = session.scalar(select(func.count()).select_from(Video).where(*conditions)) or 0
    order = Video.id.desc() if newest_first else Video.id
    rows = session.scalars(select(Video).where(*conditions).order_by(order).limit(limit).offset(offset)).all()
    return list(rows), int(count)


def update_details(video_id: int, changes: dict[str, Any], *, session: Session) -> Video | None:
    """Set some of title, external_id and meta (validated by the API's VideoUpdate schema); None
    when there is no such video."""
    video = session.get(Video, video_id)
    if video is None:
        return None
    for name in ("title", "external_id", "meta"):
        if name in changes:
            setattr(video, name, changes[name])
    video.updated_at = utcnow()
    session.flush()
    return video


def count_by_status(*, session: Session) -> dict[str, int]:
    counts = {state.value: 0 for state in VideoStatus}
    for state, number in session.execute(select(Video.status, func.count()).group_by(Video.status)):
        counts[state] = int(number)
    return counts


def ids_with_status(state: str, *, session: Session) -> set[int]:
    return set(session.scalars(select(Video.id).where(Video.status == state)))


def ready_among(video_ids: Iterable[int], *, session: Session) -> set[int]:
    """The subset of `video_ids` that exist and are ready (searchable)."""
    wanted = list({int(v) for v in video_ids})
    found: set[int] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update(session.scalars(select(Video.id).where(Video.id.in_(chunk), Video.status == READY)))
    return found


def videos_by_ids(video_ids: Iterable[int], *, session: Session) -> dict[int, Video]:
    wanted = list({int(v) for v in video_ids})
    rows: dict[int, Video] = {}
    for start in range(0, len(wanted), 500):
        for video in session.scalars(select(Video).where(Video.id.in_(wanted[start : start + 500]))):
            rows[video.id] = video
    return rows


def transition(video_id: int, *, session: Session, allowed_from: Iterable[str], **values: Any) -> bool:
    """Move one video's row from one of the `allowed_from` states, setting `values`; False when
    it is gone or in another state.

    Every status change goes through this one conditional UPDATE: its WHERE clause is the lock,
    so of two racing writers (two workers, a worker and a delete) exactly one wins.
    """
    result = session.execute(
        update(Video)
        .where(Video.id == video_id, Video.status.in_(list(allowed_from)))
        .values(updated_at=utcnow(), **values)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def claim_next(*, session: Session) -> int | None:
    """Atomically move the next queued video to processing and return its id (commits).

    Oldest first, but videos whose runs were interrupted less often go before the others: a video
    that crashes the process each time it is indexed then holds up nothing behind it.
    The conditional UPDATE is the lock: of several workers racing for one row, exactly one
    sees its WHERE status='queued' still true.
    """
    for _ in range(16):
        candidate = session.scalar(
            select(Video.id).where(Video.status == QUEUED).order_by(Video.interruptions, Video.id).limit(1)
        )
        if candidate is None:
            session.commit()
            return None
        claimed = transition(
            candidate, session=session, allowed_from=[QUEUED], status=PROCESSING, attempts=Video.attempts + 1
        )
        session.commit()
        if claimed:
            return int(candidate)
    return None


def mark_ready(
    video_id: int,
    *,
    session: Session,
    duration: float | None,
    fps: float | None,
    frames_indexed: int,
    frames_expected: int | None = None,
    warnings: list[str] | None = None,
    checkpoint: str | None = None,
) -> bool:
    """processing -> ready; False when the row is gone or no longer processing (deleted meanwhile).

    `frames_expected` and `warnings` say what the decode lost; `checkpoint` is the fingerprint of
    the model that made the features.
    """
    return transition(
        video_id,
        session=session,
        allowed_from=[PROCESSING],
        status=READY,
        failure_reason=None,
        duration=duration,
        fps=fps,
        frames_indexed=frames_indexed,
        frames_expected=frames_expected,
        warnings=warnings or None,
        checkpoint=checkpoint,
        indexed_at=utcnow(),
        matched_at=None,  # its matches are searched for again (indexer.match_graph)
    )


def mark_failed(video_id: int, reason: str, *, session: Session) -> bool:
    """processing -> failed with a reason the user can read."""
    return transition(video_id, session=session, allowed_from=[PROCESSING], status=FAILED, failure_reason=reason)


def requeue(video_id: int, *, session: Session, reason: str | None = None) -> bool:
    """Put a processing, failed or ready video back on the queue (its counts go on)."""
    return transition(
        video_id, session=session, allowed_from=[PROCESSING, FAILED, READY], status=QUEUED, failure_reason=reason
    )


def own_failures(video: Video) -> int:
    """Runs that ended in an error of the video's own processing (not cut short by a dying process)."""
    return video.attempts - video.interruptions


def reindex(video_id: int, *, session: Session) -> bool:
    """ready or failed -> queued with a fresh start (attempts and interruptions back to zero), to be
    embedded again from its stored upload; False when it is gone, or queued or being indexed."""
    return transition(
        video_id,
        session=session,
        allowed_from=[READY, FAILED],
        status=QUEUED,
        failure_reason=None,
        attempts=0,
        interruptions=0,
    )


def fail_unindexable(video_id: int, reason: str, *, session: Session) -> bool:
    """ready or failed -> failed: a video that cannot be indexed again (its upload is gone)."""
    return transition(video_id, session=session, allowed_from=[READY, FAILED], status=FAILED, failure_reason=reason)


def reindexable_ids(*, session: Session) -> list[int]:
    """Every video `hapvr reindex --all` puts back on the queue (ready or failed), oldest first."""
    return list(session.scalars(select(Video.id).where(Video.status.in_([READY, FAILED])).order_by(Video.id)))


def _interrupted(
    video_id: int, interruptions: int, max_interruptions: int, reason: str, *, session: Session
) -> str | None:
    """processing -> queued after an interruption, or -> failed once `max_interruptions` is reached;
    returns the new status, or None when the row was no longer processing (someone else acted)."""
    count = interruptions + 1
    values: dict[str, Any] = {"interruptions": count}
    if count >= max_interruptions:
        values.update(status=FAILED, failure_reason=f"{reason} {count} times; giving up (reindex it to try again)")
    else:
        values.update(status=QUEUED, failure_reason=None)
    moved = transition(video_id, session=session, allowed_from=[PROCESSING], **values)
    return str(values["status"]) if moved else None


@dataclass(frozen=True)
class Recovery:
    requeued: list[int]
    failed: list[int]


def recover_interrupted(*, session: Session, max_interruptions: int) -> Recovery:
    """Jobs left `processing` by a crash go back to the queue, an interruption on their record.

    An interruption is not the video's fault and does not count as an attempt; the bound on
    interruptions is what stops a video that kills the process every time from doing so forever.
    """
    requeued: list[int] = []
    failed: list[int] = []
    interrupted = session.execute(select(Video.id, Video.interruptions).where(Video.status == PROCESSING)).all()
    for video_id, interruptions in interrupted:
        reason = "indexing was interrupted (the process stopped mid-job)"
        status = _interrupted(video_id, interruptions, max_interruptions, reason, session=session)
        if status == FAILED:
            failed.append(video_id)
        elif status == QUEUED:
            requeued.append(video_id)
    return Recovery(requeued=requeued, failed=failed)


def delete_video(video_id: int, *, session: Session) -> Video | None:
    """Remove the row; returns what it held (the caller cleans up files), or None if absent."""
    video = session.get(Video, video_id)
    if video is None:
        return None
    session.delete(video)
    session.flush()
    return video


def storage_path_in_use(storage_path: str, *, session: Session) -> bool:
    return bool(session.scalar(select(func.count()).select_from(Video).where(Video.storage_path == storage_path)))


def storage_paths(*, session: Session) -> set[str]:
    """Every upload a row refers to (what the orphan sweep of the upload store must keep)."""
    return set(session.scalars(select(Video.storage_path)))


class CheckpointMismatch(RuntimeError):
    """Ready videos were indexed with another checkpoint than the configured one (a refusal to start)."""


def require_checkpoint(checkpoint: str, *, session: Session) -> None:
    """Raise CheckpointMismatch, with a one-line reason, when any ready video's features were made
    by another checkpoint than `checkpoint` (a fingerprint): they cannot be compared with its own.

    Rows without a fingerprint (indexed before fingerprints were recorded) are taken as its own.
    """
    others = session.execute(
        select(Video.checkpoint, func.count())
        .where(Video.status == READY, Video.checkpoint.is_not(None), Video.checkpoint != checkpoint)
        .group_by(Video.checkpoint)
    ).all()
    if others:
        found = ", ".join(f"{count} with {fingerprint}" for fingerprint, count in others)
        raise CheckpointMismatch(
            f"the catalog holds videos indexed with another checkpoint ({found}) than the configured one "
            f"({checkpoint}); run `hapvr reindex --all` with the service stopped, then start it again "
            "(or configure the checkpoint they were made with)"
        )


# -- deployed mode: jobs delivered by a networked queue (indexer.redis_queue) ------------------------


def claim(video_id: int, *, session: Session) -> bool:
    """queued -> processing for one given video (commits); False when it is not queued.

    A queue that delivers a job more than once (at-least-once) hands it to whoever claims the
    row first; the other deliveries find it no longer queued and do nothing.
    """
    claimed = transition(
        video_id, session=session, allowed_from=[QUEUED], status=PROCESSING, attempts=Video.attempts + 1
    )
    session.commit()
    return claimed


def release_abandoned(video_id: int, *, session: Session, max_interruptions: int) -> str | None:
    """A `processing` video whose worker is gone: back to queued with an interruption on its record,
    or failed once it reaches `max_interruptions` (see recover_interrupted).

    Returns the new status, or None when the row was no longer processing (someone else acted).
    """
    video = session.get(Video, video_id)
    if video is None or video.status != PROCESSING:
        return None
    reason = "the worker stopped mid-job"
    return _interrupted(video_id, video.interruptions, max_interruptions, reason, session=session)


def queued_before(moment: Any, *, session: Session) -> list[int]:
    """Ids of videos queued and untouched since `moment` (an aware datetime), oldest first."""
    return list(
        session.scalars(select(Video.id).where(Video.status == QUEUED, Video.updated_at < moment).order_by(Video.id))
    )
