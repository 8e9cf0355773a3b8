"""The indexing machinery the service drives, behind the narrow interfaces it needs.

`Components` is wired in one place (`build_components`, from the settings); tests hand in
their own. The service never touches FAISS, torch or the decoder except through these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from indexer.feature_store import FeatureStorage
    from indexer.settings import Settings
    from indexer.vector_index import VectorIndex
    from model.checkpoint import ModelBundle
    from model.embedding import VideoEmbedder
    from model.features import VideoFeatures

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """A video file to features; raises model.video.VideoDecodeError for unusable input, or for
    more than `max_frames` sampled frames when given (below the configured limit)."""

    def embed(self, path: str | Path, *, max_frames: int | None = None) -> VideoFeatures: ...


class Searcher(Protocol):
    def search(
        self,
        query: VideoFeatures,
        *,
        k: int,
        min_score: float | None,
        candidates: int,
        exclude: set[int],
        is_allowed: Callable[[Iterable[int]], set[int]],
        tiers: Collection[str] | None = None,
        variants: Sequence[VideoFeatures] = (),
    ) -> list[Any]: ...


@dataclass
class Components:
    """What the service needs beside its catalog: embedder, feature store, vector index, searcher.

    `load_index(path)` returns the persisted index, or None when the file is missing or
    unreadable (the caller then rebuilds it from the store); `new_index()` an empty one.
    `probe(path)` checks a file's header cheaply so junk is refused at upload time.
    """

    embedder: Embedder
    store: FeatureStorage
    new_index: Callable[[], VectorIndex]
    load_index: Callable[[Path], VectorIndex | None]
    make_searcher: Callable[[VectorIndex], Searcher]
    probe: Callable[[Path], None]
    description: str = ""


def decode_limits(settings: Settings):  # -> model.video.DecodeLimits
    from model.video import DecodeLimits

    return DecodeLimits(
        max_frames=settings.max_frames, max_pixels=settings.max_pixels, max_duration_s=settings.max_duration_s
    )


def make_probe(settings: Settings) -> Callable[[Path], None]:
    """A cheap upload-time check (container header only): raises VideoDecodeError for files that
    are not video, have no video stream, or break the resolution or duration limits."""
    from model.video import VideoDecodeError, probe_video

    limits = decode_limits(settings)

    def probe(path: Path) -> None:
        info = probe_video(path)
        if info.width * info.height > limits.max_pixels:
            raise VideoDecodeError(
                f"resolution {info.width}x{info.height} is over the limit of {limits.max_pixels} pixels"
            )
        if info.duration is not None and info.duration > limits.max_duration_s:
            raise VideoDecodeError(f"duration {info.duration:.0f} s is over the limit of {limits.max_duration_s:.0f} s")

    return probe


def index_overrides(settings: Settings) -> dict[str, Any]:
    """IndexConfig fields the settings override (the indexer's defaults stand otherwise)."""
    return {} if settings.index_threshold is None else {"approximate_threshold": settings.index_threshold}


def milvus_factories(
    settings: Settings, dim: int
) -> tuple[Callable[[], VectorIndex], Callable[[Path], VectorIndex | None]]:
    """(new_index, load_index) over the configured Milvus collection; the FAISS file path is unused."""
    from indexer.milvus_index import MilvusConfig, MilvusIndex

    config = MilvusConfig(
        uri=settings.milvus_location,
        collection=settings.milvus_collection,
        dim=dim,
        index_type=settings.milvus_index_type,
        timeout_s=settings.milvus_timeout_s,
    )
    return (lambda: MilvusIndex(config)), (lambda _path: MilvusIndex.load(config))


def build_embedder(settings: Settings, bundle: ModelBundle) -> VideoEmbedder:
    """The one path from a video file to features, as the settings configure it, warmed up.

    Warm-up happens here, on one thread: the first call exports and loads the ONNX graph, which
    must not happen in several worker threads at once, nor inside the first user's request.
    """
    from model.checkpoint import fingerprint
    from model.embedding import VideoEmbedder

    encoder = bundle.frame_encoder(runtime=settings.runtime, cache_dir=settings.model_cache_dir)
    encoder.encode(np.zeros((1, 256, 256, 3), dtype=np.uint8))
    return VideoEmbedder(
        bundle,
        fps=settings.fps,
        limits=decode_limits(settings),
        encoder=encoder,
        checkpoint=fingerprint(settings.checkpoint),
    )


def build_components(settings: Settings) -> Components:
    """The real machinery: checkpoint, frame encoder, feature store, FAISS index, search engine."""
    from indexer.feature_store import FeatureStore
    from indexer.search import SearchConfig, SearchEngine
    from indexer.vector_index import FaissIndex, IndexConfig, IndexLoadError
    from model.checkpoint import load_default

    bundle = load_default(settings.checkpoint)
    embedder = build_embedder(settings, bundle)
    encoder = embedder.encoder
    store = FeatureStore(settings.features_dir, compact=settings.feature_format == "int4")
    store.remove_partial_writes()
    dim = bundle.similarity.config.dim
    index_config = IndexConfig(dim=dim, **index_overrides(settings))
    search_config = SearchConfig(candidates=settings.candidates)

    def load_faiss(path: Path) -> VectorIndex | None:
        if not path.exists():
            return None  # a first start: nothing saved yet
        try:
            return FaissIndex.load(path, index_config, store)  # the store: to retrain from as it grows
        except IndexLoadError as error:
            log.warning("%s; rebuilding the index from the feature store", error)
            return None

    new_index: Callable[[], VectorIndex] = lambda: FaissIndex(index_config, store)  # noqa: E731
    load_index: Callable[[Path], VectorIndex | None] = load_faiss
    if settings.vector_index == "milvus":
        new_index, load_index = milvus_factories(settings, dim)

    return Components(
        embedder=embedder,
        store=store,
        new_index=new_index,
        load_index=load_index,
        make_searcher=lambda index: SearchEngine(store, index, bundle.similarity, search_config),
        probe=make_probe(settings),
        description=f"{bundle.mode} {bundle.backbone} checkpoint, encoder on {encoder.runtime}",
    )
