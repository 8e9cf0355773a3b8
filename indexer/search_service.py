"""Search: by an indexed video or by an uploaded clip, filtered through the catalog.

The engine proposes hits from the index; the catalog has the last word, so a video that is
deleted, not ready, or the query itself is never returned, whatever the index still holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from indexer import catalog
from indexer.db import session_scope
from indexer.errors import Conflict, NotFound, Unprocessable
from indexer.library import Library
from indexer.metrics import Metrics
from indexer.variants import embed_with_window
from model.similarity.calibration import Tier
from model.similarity.segments import Segment

if TYPE_CHECKING:
    from indexer.components import Embedder, Searcher
    from model.features import VideoFeatures


T = TypeVar("T")


@dataclass(frozen=True)
class Match:
    """A catalog-checked, re-ranked result: an indexed video sharing footage with the query."""

    video_id: int
    score: float  # calibrated 0-1
    rank: int  # 1-based
    title: str | None
    external_id: str | None
    segments: list[Segment]
    raw_score: float  # the similarity network's own score
    tier: Tier


@dataclass(frozen=True)
class Matches:
    """The answer to one search: its matches best first and what it cost."""

    query_video_id: int | None
    k: int
    min_score: float | None
    data: list[Match]
    took_ms: float

    @property
    def count(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class SearchLimits:
    candidates: int
    max_k: int


class SearchService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        metrics: Metrics,
        limits: SearchLimits,
        threads: int,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._limits = limits
        # Searches run on a few long-lived threads, not on the server's large request pool:
        # torch keeps one OpenMP team per calling thread, and teams left spinning on many
        # threads starve the cores (measured: 2.5x slower searches on 2 cores).
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hapvr-search")

    async def run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a search method on the search threads without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(function, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def ready_among(self, video_ids: Any) -> set[int]:
        with session_scope(self._sessions) as session:
            return catalog.ready_among(video_ids, session=session)

    def by_video(
        self,
        video_id: int,
        *,
        k: int,
        min_score: float | None,
        library: Library,
        tiers: Collection[str] | None = None,
        source: str = "video",
    ) -> Matches:
        """`source` labels the latency metric: "video" for users' searches, "graph" for the match graph's."""
        started = time.perf_counter()
        with session_scope(self._sessions) as session:
            video = catalog.get_video(video_id, session=session)
            if video is None:
                raise NotFound(f"video {video_id} not found")
            if video.status != catalog.READY:
                raise Conflict(f"video {video_id} is {video.status}, not ready; search once it is indexed")
        from indexer.feature_store import MissingFeaturesError

        def search(searcher: Searcher, features: VideoFeatures | None) -> list[Any]:
            # The video's inner window, when it has one, is another version of the query.
            window = library.window(video_id)
            return self._run(searcher, features, k, min_score, {video_id}, tiers, [] if window is None else [window])

        try:
            raw = library.read(search, video_id)
        except MissingFeaturesError:
            raise Conflict(f"video {video_id} was deleted or is being re-indexed") from None
        hits = self._present(raw, k=k, exclude={video_id})
        took = time.perf_counter() - started
        self._metrics.search_latency.labels(source).observe(took)
        return Matches(query_video_id=video_id, k=k, min_score=min_score, data=hits, took_ms=took * 1000)

    def by_clip(
        self,
        path: Path,
        *,
        k: int,
        min_score: float | None,
        library: Library,
        embedder: Embedder,
        max_frames: int,
        tiers: Collection[str] | None = None,
    ) -> Matches:
        """Search with a clip file of at most `max_frames` sampled frames (more: 422, refused from the
        header before decoding when it states a duration)."""
        from model.video import VideoDecodeError

        started = time.perf_counter()
        try:
            features, window = embed_with_window(embedder, path, max_frames=max_frames)
        except VideoDecodeError as error:
            raise Unprocessable(f"the uploaded clip cannot be used: {error}") from None
        variants = [] if window is None else [window]
        raw = library.read(lambda searcher, _: self._run(searcher, features, k, min_score, set(), tiers, variants))
        hits = self._present(raw, k=k, exclude=set())
        took = time.perf_counter() - started
        self._metrics.search_latency.labels("upload").observe(took)
        return Matches(query_video_id=None, k=k, min_score=min_score, data=hits, took_ms=took * 1000)

    def _run(
        self,
        searcher: Searcher,
        features: VideoFeatures | None,
        k: int,
        min_score: float | None,
        exclude: set[int],
        tiers: Collection[str] | None,
        variants: list[VideoFeatures],
    ) -> list[Any]:
        assert features is not None
        return searcher.search(
            features,
            k=k,
            min_score=min_score,
            candidates=max(self._limits.candidates, k),
            exclude=exclude,
            is_allowed=self.ready_among,
            tiers=tiers,
            variants=variants,
        )

    def _present(self, raw: list[Any], *, k: int, exclude: set[int]) -> list[Match]:
        """Catalog-checked, re-ranked hits with their titles."""
        with session_scope(self._sessions) as session:
            rows = catalog.videos_by_ids([hit.video_id for hit in raw], session=session)
        hits: list[Match] = []
        for hit in sorted(raw, key=lambda h: (-float(h.score), -float(h.raw_score), int(h.video_id))):
            row = rows.get(int(hit.video_id))
            if row is None or row.status != catalog.READY or row.id in exclude:
                continue
            hits.append(
                Match(
                    video_id=row.id,
                    score=float(hit.score),
                    rank=len(hits) + 1,
                    title=row.title,
                    external_id=row.external_id,
                    segments=list(hit.segments),
                    raw_score=float(hit.raw_score),
                    tier=hit.tier,
                )
            )
            if len(hits) == k:
                break
        return hits
