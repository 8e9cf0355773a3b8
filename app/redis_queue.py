"""The deployed mode's job queue: Redis, through rq, with the catalog as the source of truth.

Why rq: it is small, well kept and synchronous like our job function (app.jobs.index_video);
its `SimpleWorker` runs jobs inside the worker process, so the model is loaded once per process
and no ONNX session is ever forked; it has retries with back-off intervals (`Retry`), job
registries to inspect, and a burst mode that drains the queue and returns. Celery brings a
broker abstraction, its own configuration and a prefork pool we do not need; arq is asyncio.

A Redis job only says "look at video V". What makes delivery safe is the catalog:
- at-least-once is made idempotent by `catalog.claim`: of several deliveries of one video, only
  the one that moves the row from queued to processing works; index_video replaces features
  and vectors, so even a second claimed run leaves one copy;
- a running job holds a lease key in Redis, refreshed by a heartbeat thread. Every worker runs
  a reaper: a `processing` row without a lease for LEASE_TTL_S had its worker killed; it goes
  back to queued (or failed, out of attempts) and is enqueued again;
- Redis may lose its queue (a restart without persistence): rows queued for long are enqueued
  again by the reapers, and every API replica enqueues all queued rows at start.
After a job's video turns ready (or is found deleted), the worker publishes an event on the
deployment's channel; API replicas update their in-memory index (app.index_sync).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from app import catalog
from app.db import session_scope

if TYPE_CHECKING:
    from app.components import Components
    from app.jobs import JobContext
    from app.settings import Settings

log = logging.getLogger(__name__)

# Seconds a job's lease lives without a heartbeat; a worker that stops beating for this long
# (killed, frozen, cut off) loses its job to the reapers.
LEASE_TTL_S = 10.0
# Seconds between heartbeats (a few per lease lifetime, so one slow beat loses nothing).
HEARTBEAT_S = 3.0
# Seconds between two passes of each worker's reaper.
REAP_INTERVAL_S = 3.0
# Seconds a row may stay queued before the reapers enqueue it again (a queue lost with Redis).
STALE_QUEUED_S = 60.0
# Back-off of rq's retries of a job that failed unexpectedly (seconds before retry 1, 2, ...).
RETRY_BACKOFF_S = (5, 30, 120)
# A job running longer than this is stopped by rq (a 4-hour video takes minutes on a CPU).
JOB_TIMEOUT_S = 2 * 3600
# Seconds rq keeps a finished job's record (for inspection; the catalog holds the outcome).
RESULT_TTL_S = 3600
FAILURE_TTL_S = 7 * 24 * 3600

# The job function, as rq imports it in the worker.
JOB_FUNCTION = "app.redis_queue.index_job"


def connect(url: str) -> Redis:
    return Redis.from_url(url, health_check_interval=30, socket_connect_timeout=5, socket_keepalive=True)


def queue_name(prefix: str) -> str:
    return f"{prefix}:index"


def events_channel(prefix: str) -> str:
    return f"{prefix}:events"


def lease_key(prefix: str, video_id: int) -> str:
    return f"{prefix}:lease:{int(video_id)}"


def job_id(prefix: str, video_id: int) -> str:
    """One rq job id per video: enqueueing a video whose job still waits is a no-op."""
    return f"{prefix}-video-{int(video_id)}"


def publish(redis: Redis, prefix: str, event: str, video_id: int) -> None:
    """Tell every API replica that a video was indexed or deleted (best effort: they reconcile too)."""
    try:
        redis.publish(events_channel(prefix), json.dumps({"event": event, "video_id": int(video_id)}))
    except RedisError as error:
        log.warning("could not publish %s of video %d: %s", event, video_id, error)


class RedisQueue:
    """JobQueue on rq. `enqueue` is all the upload path needs; workers are rq workers (run_worker)."""

    def __init__(self, redis: Redis, prefix: str, max_attempts: int) -> None:
        from rq import Queue

        self.redis = redis
        self.prefix = prefix
        self.max_attempts = max_attempts
        self.rq = Queue(queue_name(prefix), connection=redis)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisQueue:
        assert settings.redis_url is not None
        return cls(connect(settings.redis_url), settings.redis_prefix, settings.max_attempts)

    def enqueue(self, video_id: int) -> None:
        from rq import Retry
        from rq.job import JobStatus

        identifier = job_id(self.prefix, video_id)
        waiting = self.rq.fetch_job(identifier)
        if waiting is not None and waiting.get_status(refresh=False) in (
            JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED,
        ):
            return
        self.rq.enqueue(
            JOB_FUNCTION,
            int(video_id),
            job_id=identifier,
            retry=Retry(max=self.max_attempts, interval=list(RETRY_BACKOFF_S)),
            job_timeout=JOB_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            description=f"index video {int(video_id)}",
        )

    def enqueue_many(self, video_ids: Iterable[int]) -> int:
        count = 0
        for video_id in video_ids:
            self.enqueue(video_id)
            count += 1
        return count

    def enqueue_queued(self, sessions: sessionmaker[Session]) -> int:
        """Enqueue every queued row (jobs survive a Redis that lost its data)."""
        with session_scope(sessions) as session:
            queued = sorted(catalog.ids_with_status(catalog.QUEUED, session=session))
        return self.enqueue_many(queued)

    # The pull half of JobQueue: in the deployed mode rq delivers jobs to `hapvr worker`, so an
    # in-process pool finds nothing to claim here.
    def claim(self) -> int | None:
        return None

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, 1.0))

    def wake_all(self) -> None:
        pass


# -- the worker side -----------------------------------------------------------------------------


class NullIndex:
    """The vector index of a worker process: workers write features; API replicas index them."""

    def add(self, video_id: int, vectors: np.ndarray) -> None:
        pass

    def remove(self, video_id: int) -> None:
        pass

    def video_ids(self) -> list[int]:
        return []

    def rebuild(self, store: Any, video_ids: Iterable[int] | None = None) -> int:
        return 0

    def save(self, path: Any) -> None:
        pass

    @property
    def num_videos(self) -> int:
        return 0

    @property
    def num_frames(self) -> int:
        return 0


class RetryLater(RuntimeError):
    """Raised to rq after an unexpected error with attempts left: rq retries after a back-off."""


class Lease:
    """A job's claim on its video in Redis, kept alive by a heartbeat thread."""

    def __init__(self, redis: Redis, prefix: str, video_id: int) -> None:
        self.redis = redis
        self.key = lease_key(prefix, video_id)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """False when another worker holds the video (a duplicate delivery)."""
        if not self.redis.set(self.key, self.token, ex=int(LEASE_TTL_S), nx=True):
            return False
        self._thread = threading.Thread(target=self._beat, name=f"hapvr-lease-{self.key}", daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                # SET, not EXPIRE: the lease comes back after Redis lost it (a restart).
                self.redis.set(self.key, self.token, ex=int(LEASE_TTL_S))
            except RedisError as error:
                log.warning("lease heartbeat of %s failed: %s", self.key, error)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if self.redis.get(self.key) == self.token.encode():
                self.redis.delete(self.key)
        except RedisError as error:
            log.warning("could not release %s: %s", self.key, error)


class IndexWorker:
    """What one worker process holds: the job context, Redis, the reaper."""

    def __init__(self, ctx: JobContext, queue: RedisQueue) -> None:
        self.ctx = ctx
        self.queue = queue
        self.redis = queue.redis
        self.prefix = queue.prefix
        self.outcomes: Counter[str] = Counter()
        self._missing: dict[int, float] = {}
        self._last_stale_scan = 0.0
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def run(self, video_id: int) -> str:
        from app.jobs import index_video

        lease = Lease(self.redis, self.prefix, video_id)
        if not lease.acquire():
            return self._count("skipped")
        try:
            with session_scope(self.ctx.sessions) as session:
                claimed = catalog.claim(video_id, session=session)
            if not claimed:
                return self._count("skipped")  # done, deleted, or another delivery has it
            outcome = index_video(video_id, ctx=self.ctx)
        finally:
            lease.release()
        self._count(outcome)
        if outcome in ("ready", "deleted"):
            publish(self.redis, self.prefix, "indexed" if outcome == "ready" else "deleted", video_id)
        if outcome == "retried":
            raise RetryLater(f"video {video_id}: indexing failed unexpectedly; retrying after a back-off")
        return outcome

    def _count(self, outcome: str) -> str:
        self.outcomes[outcome] += 1
        return outcome

    # -- the reaper ----------------------------------------------------------------------------
    def start_reaper(self) -> None:
        self._reaper = threading.Thread(target=self._reap_loop, name="hapvr-reaper", daemon=True)
        self._reaper.start()

    def stop_reaper(self) -> None:
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(REAP_INTERVAL_S * 2)

    def _reap_loop(self) -> None:
        while not self._stop.wait(REAP_INTERVAL_S):
            try:
                self.reap_once()
            except Exception:  # noqa: BLE001 - the reaper must outlive a Redis or database hiccup
                log.exception("reaper pass failed; retrying")

    def reap_once(self, now: float | None = None) -> list[int]:
        """Release `processing` videos whose lease stayed missing for LEASE_TTL_S; returns them."""
        now = time.monotonic() if now is None else now
        with session_scope(self.ctx.sessions) as session:
            processing = catalog.ids_with_status(catalog.PROCESSING, session=session)
        for video_id in set(self._missing) - processing:
            del self._missing[video_id]
        released: list[int] = []
        for video_id in sorted(processing):
            if self.redis.exists(lease_key(self.prefix, video_id)):
                self._missing.pop(video_id, None)
                continue
            first = self._missing.setdefault(video_id, now)
            if now - first < LEASE_TTL_S:
                continue
            del self._missing[video_id]
            with session_scope(self.ctx.sessions) as session:
                status = catalog.release_abandoned(video_id, session=session, max_attempts=self.ctx.max_attempts)
            if status == catalog.QUEUED:
                log.warning("video %d: its worker stopped mid-job; queued again", video_id)
                self.queue.enqueue(video_id)
                released.append(video_id)
            elif status == catalog.FAILED:
                log.warning("video %d: its worker stopped mid-job too often; failed", video_id)
                released.append(video_id)
        if now - self._last_stale_scan >= STALE_QUEUED_S:
            self._last_stale_scan = now
            moment = datetime.now(timezone.utc) - timedelta(seconds=STALE_QUEUED_S)
            with session_scope(self.ctx.sessions) as session:
                stale = catalog.queued_before(moment, session=session)
            if stale:
                self.queue.enqueue_many(stale)  # a job still waiting in Redis is left as it is
        return released


# The worker of this process, for rq's job function (rq imports jobs by name).
_current: IndexWorker | None = None


def index_job(video_id: int) -> str:
    """rq's job: index one video in this worker process."""
    if _current is None:
        raise RuntimeError("index_job runs only inside `hapvr worker` (deployed mode)")
    return _current.run(video_id)


@dataclass
class WorkerResult:
    outcomes: Counter[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.outcomes.get("failed") else 0


def worker_components(components: Components) -> Components:
    """The components of a worker process: the real embedder and store, no vector index."""
    return replace(
        components,
        new_index=NullIndex,
        load_index=lambda _path: None,
        make_searcher=lambda _index: None,  # type: ignore[arg-type,return-value]
    )


def run_worker(settings: Settings, *, burst: bool = False, components_factory: Callable[[Settings], Components] | None = None) -> WorkerResult:
    """One rq worker in this process (the CLI starts one per `--workers`); returns its outcomes."""
    global _current
    from rq import SimpleWorker

    from app.components import build_components
    from app.db import make_engine, make_session_factory, migrate
    from app.jobs import JobContext
    from app.library import Library
    from app.metrics import Metrics
    from app.storage import UploadStore

    factory = components_factory or build_components
    engine = make_engine(settings.catalog_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    uploads = UploadStore(settings.uploads_dir, settings.tmp_dir)
    components = worker_components(factory(settings))
    library = Library(components, settings.index_dir / "worker-unused.faiss")
    ctx = JobContext(
        sessions=sessions,
        uploads=uploads,
        embedder=components.embedder,
        library=library,
        metrics=Metrics(),
        max_attempts=settings.max_attempts,
    )
    queue = RedisQueue.from_settings(settings)
    worker = IndexWorker(ctx, queue)
    _current = worker
    queue.enqueue_queued(sessions)
    worker.start_reaper()
    try:
        rq_worker = SimpleWorker([queue.rq], connection=queue.redis)
        rq_worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level.upper())
    finally:
        worker.stop_reaper()
        _current = None
        engine.dispose()
    return WorkerResult(worker.outcomes)
