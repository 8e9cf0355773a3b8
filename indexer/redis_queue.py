"""The deployed mode's job queue: Redis, through rq, with the catalog as the source of truth.

Why rq: it is small, well kept and synchronous like our job function (indexer.jobs.index_video);
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
deployment's channel; API replicas update their in-memory index (indexer.index_sync).

This module is the publishing side (what the API needs); indexer.redis_worker is the worker side.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from indexer import catalog
from indexer.db import session_scope

if TYPE_CHECKING:
    from indexer.settings import Settings

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

# The name jobs carry. No function is imported by it: `hapvr worker` binds every job of this
# queue to its own IndexWorker (indexer.redis_worker.bound_job_class), so a job always runs
# with the context of the process that took it.
JOB_NAME = "hapvr.index_video"


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
    """A JobPublisher on rq; the jobs are taken by `hapvr worker` processes (indexer.redis_worker)."""

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
            JobStatus.QUEUED,
            JobStatus.SCHEDULED,
            JobStatus.DEFERRED,
        ):
            return
        self.rq.enqueue(
            JOB_NAME,
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
