"""The job queue: which video an indexer worker should process next.

Two narrow sides. The upload path only announces jobs (`JobPublisher`); in-process workers
take them (`JobSource`). The embedded queue, `CatalogQueue`, is both and keeps no queue of its
own: a job is a catalog row with status `queued`, and claiming one is an atomic conditional
UPDATE (indexer.catalog.claim_next), so the queue survives any crash together with the catalog.
The deployed queue (indexer.redis_queue) is a publisher only: rq delivers its jobs to
`hapvr worker` processes. The job itself (indexer.jobs.index_video) is the same for both.
"""

from __future__ import annotations

import threading
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from indexer import catalog
from indexer.db import session_scope


class JobPublisher(Protocol):
    def enqueue(self, video_id: int) -> None:
        """Announce a video whose row is already `queued` in the catalog."""


class JobSource(Protocol):
    def claim(self) -> int | None:
        """Take the next job (its row turns `processing`), or None when there is none."""

    def wait(self, timeout: float) -> None:
        """Block until a job may be available or `timeout` seconds pass."""

    def wake_all(self) -> None:
        """Release every waiter (shutdown)."""


class CatalogQueue:
    """JobPublisher and JobSource over catalog rows; a condition variable saves idle workers from busy polling."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._cond = threading.Condition()
        self._announced = 0

    def enqueue(self, video_id: int) -> None:
        with self._cond:
            self._announced += 1
            self._cond.notify()

    def claim(self) -> int | None:
        with session_scope(self._sessions) as session:
            return catalog.claim_next(session=session)

    def wait(self, timeout: float) -> None:
        with self._cond:
            if self._announced:
                self._announced -= 1
                return
            self._cond.wait(timeout)
            if self._announced:
                self._announced -= 1

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()
