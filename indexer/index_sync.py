"""Keeps an API replica's in-memory index in step with videos indexed or deleted elsewhere.

In the deployed mode workers in other processes write features to the shared store and mark
videos ready; each API replica holds its own FAISS index. Workers publish an event per video
(indexer.redis_queue.publish); this thread applies them at once. Pub/sub delivers at most once, so
events can be missed (Redis restarted, the connection dropped, the replica was busy starting):
a full catch-up from the catalog runs after every (re)subscription and every RECONCILE_S.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from indexer import catalog
from indexer.db import session_scope
from indexer.library import Library
from indexer.redis_queue import connect, events_channel

log = logging.getLogger(__name__)

# Seconds between two full catch-ups from the catalog (what bounds the staleness of a missed event).
RECONCILE_S = 15.0
# Seconds to wait before subscribing again after the connection to Redis broke.
RESUBSCRIBE_S = 1.0


class IndexSync:
    def __init__(self, redis_url: str, prefix: str, sessions: sessionmaker[Session], library: Library) -> None:
        self._redis = connect(redis_url)
        self._channel = events_channel(prefix)
        self._sessions = sessions
        self._library = library
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events_applied = 0
        self.catch_ups = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hapvr-index-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._redis.close()

    def catch_up(self) -> tuple[list[int], list[int]]:
        """Compare the whole index with the catalog's ready set; returns (added, removed)."""
        with session_scope(self._sessions) as session:
            ready = catalog.ids_with_status(catalog.READY, session=session)
        added, removed = self._library.sync_index(ready)
        self.catch_ups += 1
        if added or removed:
            log.info("index caught up with the catalog: %d added, %d removed", len(added), len(removed))
        return added, removed

    def apply(self, video_id: int) -> None:
        """An event about one video: index or drop it as the catalog says now."""
        with session_scope(self._sessions) as session:
            ready = catalog.ready_among([video_id], session=session)
        self._library.sync_index(ready, only={video_id})
        self.events_applied += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                self.catch_up()  # whatever happened while not subscribed
                next_catch_up = time.monotonic() + RECONCILE_S
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.apply(int(json.loads(message["data"])["video_id"]))
                    if time.monotonic() >= next_catch_up:
                        self.catch_up()
                        next_catch_up = time.monotonic() + RECONCILE_S
            except Exception as error:  # noqa: BLE001 - Redis or the catalog away: subscribe again, catch up
                log.warning("index events interrupted (%s: %s); catching up again", type(error).__name__, error)
                self._stop.wait(RESUBSCRIBE_S)
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001
                    pass
