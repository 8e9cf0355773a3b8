"""Admission: a bounded number of searches run at once and a bounded number wait; the rest get
503 with Retry-After at once.

Without it every request joined the search threads' unbounded queue: 200 clients searching at
once waited 8.5 s (p50) for searches that take 50-100 ms alone. A refused client can come back;
an accepted one is answered within about (running + waiting) / running search times.

A request reserves its place when it arrives (before a clip is uploaded, so a crowd of uploads
is refused before it costs disk and time) and takes a running slot only for the costly part
(`async with ticket:`). Everything here runs on the server's event loop, so the counts need
no lock.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from indexer.errors import Busy


class Admission:
    """At most `running` tickets inside `async with` at once, and `running + waiting` reserved."""

    def __init__(self, name: str, *, running: int, waiting: int, retry_after_s: int) -> None:
        if running < 1 or waiting < 0:
            raise ValueError("running must be positive and waiting not negative")
        self.name = name
        self.running = running
        self.waiting = waiting
        self.retry_after_s = retry_after_s
        self.reserved = 0
        self._slots = asyncio.Semaphore(running)

    def reserve(self) -> Ticket:
        """A place in line; Busy (503) when every place is taken. Release it with `ticket.release()`."""
        if self.reserved >= self.running + self.waiting:
            raise Busy(
                f"too many {self.name} in progress ({self.running} running, {self.waiting} waiting); "
                f"retry in {self.retry_after_s} s",
                self.retry_after_s,
            )
        self.reserved += 1
        return Ticket(self)


class Ticket:
    """One admitted request: `async with ticket:` holds a running slot; `release()` gives up its place."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._released = False

    async def __aenter__(self) -> None:
        await self._admission._slots.acquire()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._admission._slots.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission.reserved -= 1


class SearchAdmission:
    """The service's two lines: searches by an indexed video, and clip searches (each embeds an upload)."""

    def __init__(self, *, search_threads: int, search_queue: int, clip_searches: int, clip_queue: int) -> None:
        # Retry-After: a waiting search is served in well under a second; a clip takes seconds.
        self.video = Admission("searches", running=search_threads, waiting=search_queue, retry_after_s=1)
        self.clip = Admission("clip searches", running=clip_searches, waiting=clip_queue, retry_after_s=5)
