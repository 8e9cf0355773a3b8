"""A thread that writes the match graph's edges of each video that turned ready.

It runs the video's own search (the same as GET /search) once and stores the hits
(indexer.match_graph.replace_edges). Work is found in the catalog (ready, `matched_at` NULL), so
nothing is lost to a crash or a restart: an interrupted video is simply still pending, and an
existing catalog is back-filled after its migration. Workers wake it when they finish a video;
otherwise it looks every POLL_S seconds (what bounds the delay for videos indexed elsewhere).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from indexer import match_graph
from indexer.db import session_scope
from indexer.errors import Conflict, NotFound
from indexer.library import Library
from indexer.search_service import SearchService

log = logging.getLogger(__name__)

POLL_S = 5.0


THREAD_NAME = "hapvr-match-graph"


class GraphUpdater:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        search: SearchService,
        library: Callable[[], Library],
        neighbours: int,
        min_score: float | None,
    ) -> None:
        self._sessions = sessions
        self._search = search
        self._library = library
        self._neighbours = neighbours
        self._min_score = min_score
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30.0)
            self._thread = None

    def run_pending(self) -> int:
        """Write the edges of every pending video; returns how many were written."""
        done = 0
        while not self._stop.is_set():
            with session_scope(self._sessions) as session:
                batch = match_graph.pending(session=session)
            written = sum(self.update(video_id) for video_id in batch)
            done += written
            if not batch or not written:
                break
        return done

    def update(self, video_id: int) -> bool:
        """Search for one video and store its hits; False when it is no longer ready."""
        try:
            matches = self._search.by_video(
                video_id, k=self._neighbours, min_score=self._min_score, library=self._library(), source="graph"
            )
        except (NotFound, Conflict):
            return False  # deleted or being re-indexed: its next ready state brings it back
        edges = [
            match_graph.Edge(
                target_id=m.video_id,
                score=m.score,
                segments=[match_graph.segment_dict(s) for s in m.segments],
                tier=m.tier,
            )
            for m in matches.data
        ]
        with session_scope(self._sessions) as session:
            return match_graph.replace_edges(video_id, edges, session=session)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_pending()
            except Exception:  # the catalog or the store away: logged, tried again next round
                log.exception("updating the match graph failed; retrying")
            self._wake.wait(POLL_S)
