"""Concurrency and durability around the in-memory vector index.

Searches read the index (and the feature store) while worker threads add and remove videos.
A readers-writer lock lets searches run side by side and keeps each of them on a consistent
view. Saving the index after every job would cost O(index) per job; `persist()` instead
group-commits: a caller blocks until a save that began after its own change has finished,
so several workers finishing at once share one save, and none marks a video ready before
the index holding it is on disk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many readers or one writer; writers wait for readers to leave and block new ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class GroupPersister:
    """Coalesces saves: `persist()` returns once a save covering every change made before it is done."""

    def __init__(self, save: Callable[[], None]) -> None:
        self._save = save
        self._cond = threading.Condition()
        self._changed = 0  # generation of the latest change
        self._saved = 0  # generation covered by the last finished save
        self._saving = False

    def mark_changed(self) -> None:
        with self._cond:
            self._changed += 1

    @property
    def dirty(self) -> bool:
        with self._cond:
            return self._changed > self._saved

    def persist(self) -> None:
        with self._cond:
            target = self._changed
            while self._saved < target:
                if self._saving:
                    self._cond.wait()
                    continue
                self._saving = True
                covering = self._changed
                saved = False
                self._cond.release()
                try:
                    self._save()
                    saved = True
                finally:
                    # A failed save raises here; a waiting caller takes its turn to retry.
                    self._cond.acquire()
                    self._saving = False
                    if saved:
                        self._saved = max(self._saved, covering)
                    self._cond.notify_all()
