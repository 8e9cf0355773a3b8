"""Indexer workers: threads that take jobs from a JobSource and run indexer.jobs.index_video.

`WorkerPool` runs beside the API in `hapvr serve`; `drain()` is the burst mode of
`hapvr worker --burst` and of tests: process jobs until the queue is empty, then return.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from indexer.queue import JobSource

log = logging.getLogger(__name__)

# Seconds an idle worker sleeps before looking at the queue again when nobody announced a job
# (jobs re-queued by another process or by start-up recovery are found this way).
IDLE_POLL_S = 1.0


def drain(
    queue: JobSource, run: Callable[[int], str], *, should_stop: Callable[[], bool] = lambda: False
) -> Counter[str]:
    """Run jobs until none is queued (or `should_stop()`); returns outcome counts."""
    outcomes: Counter[str] = Counter()
    while not should_stop():
        video_id = queue.claim()
        if video_id is None:
            break
        outcomes[run(video_id)] += 1
    return outcomes


def drain_in_threads(
    source: JobSource, run: Callable[[int], str], threads: int, *, should_stop: Callable[[], bool]
) -> Counter[str]:
    """`drain` on `threads` threads at once (the burst mode of `hapvr worker --workers N`)."""
    results: list[Counter[str]] = []
    pool = [
        threading.Thread(target=lambda: results.append(drain(source, run, should_stop=should_stop)))
        for _ in range(threads)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(results, Counter())


class WorkerPool:
    def __init__(self, queue: JobSource, run: Callable[[int], str], threads: int) -> None:
        self._queue = queue
        self._run = run
        self._count = threads
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()

    def start(self) -> None:
        for number in range(self._count):
            thread = threading.Thread(target=self._loop, name=f"hapvr-worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                video_id = self._queue.claim()
                if video_id is not None:
                    outcome = self._run(video_id)
            except Exception:
                log.exception("worker loop error; retrying shortly")
                self._stop.wait(IDLE_POLL_S)
                continue
            if video_id is None:
                self._queue.wait(IDLE_POLL_S)
                continue
            with self._lock:
                self.outcomes[outcome] += 1

    def stop(self, timeout: float | None = None) -> None:
        """Ask workers to stop after their current job and wait for them up to `timeout` seconds.

        A job still running past the timeout stays `processing` in the catalog; the next start
        puts it back on the queue.
        """
        self._stop.set()
        self._queue.wake_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    @property
    def alive(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)
