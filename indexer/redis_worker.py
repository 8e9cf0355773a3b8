"""The deployed mode's worker side: rq workers that index videos queued in Redis.

See indexer.redis_queue for the delivery guarantees (catalog claim, lease, reapers). A worker
process holds the catalog, the upload store, the feature store and the embedder; it writes
features to the shared store and publishes an event per video, and API replicas index them.

A killed worker cannot unregister itself from rq, and rq's `SimpleWorker` stretches its own
heartbeat over the whole job timeout (two hours) when a job starts, so rq alone would show it
alive and its job in progress for that long. Each worker therefore also keeps an alive key
(`worker_alive_key`, refreshed like a lease); the reapers clean up the rq records of a worker
whose key expired: its started job is handed to rq's abandoned-job handling and the worker is
unregistered.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.job import Job
from rq.registry import StartedJobRegistry

from indexer import catalog
from indexer.db import session_scope
from indexer.jobs import FeatureSink, JobContext, StoreSink, index_video
from indexer.redis_queue import (
    HEARTBEAT_S,
    LEASE_TTL_S,
    REAP_INTERVAL_S,
    STALE_QUEUED_S,
    RedisQueue,
    lease_key,
    publish,
)
from indexer.upload_store import UploadStore

if TYPE_CHECKING:
    from indexer.components import Components
    from indexer.settings import Settings

log = logging.getLogger(__name__)


class RetryLater(RuntimeError):
    """Raised to rq after an unexpected error with attempts left: rq retries after a back-off."""


def worker_alive_key(prefix: str, worker_name: str) -> str:
    """The key a running worker process keeps alive (a Lease) under its rq worker name."""
    return f"{prefix}:worker-alive:{worker_name}"


class Lease:
    """A key in Redis that lives while its holder does, kept alive by a heartbeat thread: a job's
    claim on its video (lease_key) or a worker process's sign of life (worker_alive_key)."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.redis = redis
        self.key = key
        self.token = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease (for a video: one whose row this worker has just claimed; the claim is
        what excludes a duplicate delivery, the lease only says the claimant is alive)."""
        self.redis.set(self.key, self.token, ex=int(LEASE_TTL_S))
        self._thread = threading.Thread(target=self._beat, name=f"hapvr-lease-{self.key}", daemon=True)
        self._thread.start()

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

    def __init__(
        self, ctx: JobContext, queue: RedisQueue, max_interruptions: int, *, publish_events: bool = True
    ) -> None:
        self.ctx = ctx
        # Index events tell API replicas' FAISS copies what changed; a shared Milvus collection needs none.
        self.publish_events = publish_events
        self.queue = queue
        self.redis = queue.redis
        self.prefix = queue.prefix
        self.max_interruptions = max_interruptions
        self.outcomes: Counter[str] = Counter()
        self._missing: dict[int, float] = {}
        self._last_stale_scan = 0.0
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def run(self, video_id: int) -> str:
        # Claim the row before taking the lease: once the lease is visible the attempt is counted,
        # so a worker killed at any moment after it leaves a `processing` row the reapers release.
        # (Lease first left a window where a kill lost the job with the row still queued.)
        with session_scope(self.ctx.sessions) as session:
            claimed = catalog.claim(video_id, session=session)
        if not claimed:
            return self._count("skipped")  # done, deleted, or another delivery has it
        lease = Lease(self.redis, lease_key(self.prefix, video_id))
        lease.acquire()
        try:
            outcome = index_video(video_id, ctx=self.ctx)
        finally:
            lease.release()
        self._count(outcome)
        if self.publish_events and outcome in ("ready", "deleted"):
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
            except Exception:
                log.exception("reaper pass failed; retrying")

    def reap_once(self, now: float | None = None) -> list[int]:
        """Clean up dead workers' rq records, then release `processing` videos whose lease stayed
        missing for LEASE_TTL_S; returns the videos released."""
        now = time.monotonic() if now is None else now
        self.clean_dead_workers()
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
                status = catalog.release_abandoned(video_id, session=session, max_interruptions=self.max_interruptions)
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

    def clean_dead_workers(self) -> list[str]:
        """Unregister the rq workers of this queue whose alive key expired; returns their names.

        A worker sets its key before rq registers it, so a registered worker without one has been
        silent for LEASE_TTL_S. Its running executions are marked expired in the started-job
        registry and handed to rq's own clean-up (the job is retried or failed as abandoned), so
        nothing shows it in progress; the catalog reaper takes care of its video.
        """
        dead = [
            worker
            for worker in SimpleWorker.all(queue=self.queue.rq)
            if not self.redis.exists(worker_alive_key(self.prefix, worker.name))
        ]
        if not dead:
            return []
        started = StartedJobRegistry(self.queue.rq.name, connection=self.redis)
        for worker in dead:
            for execution in worker.get_current_executions(refresh=True):
                # Score 1 (1970): expired now; xx: only an entry still there.
                self.redis.zadd(started.key, {execution.composite_key: 1}, xx=True)
        started.cleanup()
        for worker in dead:
            worker.register_death()
            log.warning("rq worker %s (pid %s on %s) died; unregistered", worker.name, worker.pid, worker.hostname)
        return [worker.name for worker in dead]


@dataclass
class WorkerResult:
    outcomes: Counter[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.outcomes.get("failed") else 0


def bound_job_class(run: Callable[[int], str]) -> type[Job]:
    """An rq job class whose function is `run`, bound in the worker process that takes the job.

    Jobs are enqueued under JOB_NAME; instead of importing a module-level function that would
    need a global to reach this process's context, the worker's own job class supplies it.
    """

    class IndexJob(Job):
        @property
        def func(self) -> Callable[[int], str]:
            return run

    return IndexJob


def _feature_sink(settings: Settings, components: Components) -> FeatureSink:
    """The feature store alone (API replicas index it into their FAISS copies), or the store and
    the shared Milvus collection, which workers write and every replica reads."""
    if settings.vector_index == "milvus":
        from indexer.library import Library

        return Library(components, settings.index_dir / "frames.faiss")
    return StoreSink(components.store)


def run_worker(
    settings: Settings, *, burst: bool = False, components_factory: Callable[[Settings], Components] | None = None
) -> WorkerResult:
    """One rq worker in this process (the CLI starts one per `--workers`); returns its outcomes.

    A worker needs the catalog, the upload and feature stores, the embedder and Redis. With FAISS
    it builds no vector index (API replicas index what workers store, see indexer.index_sync);
    with Milvus it writes the shared collection itself.
    """
    from indexer.components import build_components
    from indexer.db import make_engine, make_session_factory, migrate
    from indexer.metrics import Metrics
    from model.checkpoint import fingerprint

    factory = components_factory or build_components
    engine = make_engine(settings.catalog_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        catalog.require_checkpoint(fingerprint(settings.checkpoint), session=session)
    components = factory(settings)
    ctx = JobContext(
        sessions=sessions,
        uploads=UploadStore(settings.uploads_dir, settings.tmp_dir),
        embedder=components.embedder,
        features=_feature_sink(settings, components),
        metrics=Metrics(),
        max_attempts=settings.max_attempts,
    )
    queue = RedisQueue.from_settings(settings)
    worker = IndexWorker(ctx, queue, settings.max_interruptions, publish_events=settings.vector_index == "faiss")
    queue.enqueue_queued(sessions)
    rq_worker = SimpleWorker([queue.rq], connection=queue.redis, job_class=bound_job_class(worker.run))
    alive = Lease(queue.redis, worker_alive_key(queue.prefix, rq_worker.name))
    alive.acquire()  # before rq registers the worker: a registered worker without the key is dead
    worker.start_reaper()
    try:
        rq_worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level.upper())
    finally:
        worker.stop_reaper()
        alive.release()
        engine.dispose()
    return WorkerResult(worker.outcomes)
