"""Prometheus metrics of one service instance.

Each instance owns its registry (no process-global state), so several apps in one process
(tests) never collide. Gauges that mirror stored state (queue depth, videos by status, index
size) are computed when scraped, so they cannot drift from the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

INGEST_OUTCOMES = ("ready", "failed", "retried", "deleted")
UPLOAD_OUTCOMES = ("accepted", "duplicate", "requeued", "rejected")


class _StateCollector(Collector):
    """Reads queue depth, videos by status and index size at scrape time."""

    def __init__(
        self,
        status_counts: Callable[[], dict[str, int]],
        index_size: Callable[[], tuple[int, int] | None],
    ) -> None:
        self._status_counts = status_counts
        self._index_size = index_size

    def collect(self) -> Iterator[Metric]:
        counts = self._status_counts()
        depth = GaugeMetricFamily("hapvr_queue_depth", "Videos waiting for an indexer worker")
        depth.add_metric([], counts.get("queued", 0))
        yield depth
        videos = GaugeMetricFamily("hapvr_videos", "Catalogued videos by status", labels=["status"])
        for state, number in sorted(counts.items()):
            videos.add_metric([state], number)
        yield videos
        size = self._index_size()
        if size is not None:
            indexed, vectors = size
            index_videos = GaugeMetricFamily("hapvr_index_videos", "Videos in the vector index")
            index_videos.add_metric([], indexed)
            yield index_videos
            index_vectors = GaugeMetricFamily("hapvr_index_vectors", "Frame vectors in the vector index")
            index_vectors.add_metric([], vectors)
            yield index_vectors


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.uploads = Counter("hapvr_uploads", "Uploads by outcome", ["outcome"], registry=self.registry)
        # Labelled by route template (never the raw path), so the series stay few.
        self.rejections = Counter(
            "hapvr_rejections",
            "Requests answered with an error status (4xx refusals and 5xx), by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.ingests = Counter(
            "hapvr_ingest", "Indexing jobs finished, by outcome", ["outcome"], registry=self.registry
        )
        self.ingest_duration = Histogram(
            "hapvr_ingest_duration_seconds",
            "Wall time of one indexing job (decode, embed, store, index, persist)",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=self.registry,
        )
        self.ingest_video_seconds = Counter(
            "hapvr_ingest_video_seconds",
            "Seconds of video indexed (divide by job time for the real-time factor)",
            registry=self.registry,
        )
        self.search_latency = Histogram(
            "hapvr_search_latency_seconds",
            "Search latency, by query source (an indexed video, an uploaded clip, or the match graph's own search)",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        for outcome in INGEST_OUTCOMES:
            self.ingests.labels(outcome)
        for outcome in UPLOAD_OUTCOMES:
            self.uploads.labels(outcome)
        for source in ("video", "upload", "graph"):
            self.search_latency.labels(source)

    def watch_state(
        self,
        status_counts: Callable[[], dict[str, int]],
        index_size: Callable[[], tuple[int, int] | None],
    ) -> None:
        self.registry.register(_StateCollector(status_counts, index_size))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
