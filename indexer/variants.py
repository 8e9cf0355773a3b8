"""A video's window variant: the features of its inner window's crop, beside its own.

Picture-in-picture and boxed videos (model.inner_window, model.window_track) are embedded twice
from one decode: whole, and the frames where an inner picture shows cropped to it, at their own
times. The feature store keeps the crop's features as the
video's window record; the vector index holds both versions' frame vectors under the video's
id (the window's frames numbered after the video's own), so candidates come from either and a
delete by video removes both; the search re-ranks against both and keeps the better.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from indexer.feature_store import FeatureStorage
    from model.features import VideoFeatures


@runtime_checkable
class WindowEmbedder(Protocol):
    """An embedder that also embeds a file's inner window (model.embedding.VideoEmbedder)."""

    def embed_versions(
        self, path: str | Path, *, max_frames: int | None = None
    ) -> tuple[VideoFeatures, VideoFeatures | None]: ...


def embed_with_window(
    embedder: object, path: str | Path, *, max_frames: int | None = None
) -> tuple[VideoFeatures, VideoFeatures | None]:
    """(features, window features or None) of a file; embedders that do not look for windows give None."""
    if isinstance(embedder, WindowEmbedder):
        return embedder.embed_versions(path, max_frames=max_frames)
    plain: Any = embedder
    # The worker's call never limits frames (an embedder may take no `max_frames` then).
    features = plain.embed(path) if max_frames is None else plain.embed(path, max_frames=max_frames)
    return features, None


def store_versions(store: FeatureStorage, video_id: int, features: VideoFeatures, window: VideoFeatures | None) -> None:
    """Store a video's features and its window's; without a window, an earlier version's is removed."""
    store.put(video_id, features)
    if window is not None:
        store.put_window(video_id, window)
    else:
        store.delete_window(video_id)


def indexed_vectors(store: FeatureStorage, video_id: int) -> np.ndarray:
    """The frame vectors the index holds for a video: its own, then its window's when it has one.

    Raises the store's MissingFeaturesError (a KeyError) when the video has no features.
    """
    vectors = store.get(video_id).frame_vectors
    window = store.get_window(video_id)
    if window is None:
        return vectors
    return np.concatenate([vectors, window.frame_vectors])
