"""The window variant of a video (indexer.variants): stored beside its features, indexed under its
id on both index backends, deleted with it, and searched against; stores without it still read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from indexer.components import Components
from indexer.feature_store import CorruptFeaturesError, FeatureStore
from indexer.library import Library
from indexer.search import SearchEngine
from indexer.synthetic import edited_copy, synthetic_video
from indexer.variants import indexed_vectors
from indexer.vector_index import reconcile_index
from model.features import VideoFeatures
from model.similarity.config import SimilarityConfig
from model.similarity.network import HapVRSimilarity
from tests.indexer.test_vector_index import DIM, Backend, backend  # noqa: F401


def _video(seed: int, frames: int = 12) -> VideoFeatures:
    return synthetic_video(np.random.default_rng(seed), frames, dim=DIM, regions=4)


def _window_of(video: VideoFeatures, seed: int) -> VideoFeatures:
    """Other content on the video's own time axis, as a crop's features are."""
    other = _video(seed, video.num_frames)
    return dataclasses.replace(other, timestamps=video.timestamps, duration=video.duration)


@pytest.mark.parametrize("compact", [True, False])
def test_window_round_trip_checksum_and_delete(tmp_path: Path, compact: bool) -> None:
    store = FeatureStore(tmp_path, compact=compact)
    video = _video(1)
    window = _window_of(video, 2)
    store.put(7, video)
    assert store.get_window(7) is None  # no window unless one is stored
    store.put_window(7, window)
    read = store.get_window(7)
    assert read is not None
    np.testing.assert_allclose(read.regions, window.regions, atol=0.1)
    np.testing.assert_array_equal(read.timestamps, video.timestamps)
    assert list(store.ids()) == [7] and len(store) == 1  # the window is no video of its own

    path = store.window_path_for(7)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFeaturesError, match="checksum"):
        store.get_window(7, verify=True)

    store.delete(7)
    assert not path.exists() and not store.path_for(7).exists()
    assert store.get_window(7) is None


def test_a_store_written_without_windows_still_reads(tmp_path: Path) -> None:
    # Files of a store from before windows: the video's own file and nothing beside it.
    old = FeatureStore(tmp_path)
    videos = {video_id: _video(video_id) for video_id in (1, 2, 3)}
    for video_id, video in videos.items():
        old.put(video_id, video)
    assert sorted(p.name for p in tmp_path.rglob("*.safetensors")) == [
        "1.safetensors",
        "2.safetensors",
        "3.safetensors",
    ]
    store = FeatureStore(tmp_path)
    for video_id in videos:
        assert store.get_window(video_id) is None
        np.testing.assert_array_equal(indexed_vectors(store, video_id), store.get(video_id).frame_vectors)


def _library(backend: Backend, store: FeatureStore, root: Path) -> Library:  # noqa: F811
    net = HapVRSimilarity(SimilarityConfig.training_free(dim=DIM))
    components = Components(
        embedder=None,  # type: ignore[arg-type]  # nothing is embedded here: features come ready
        store=store,
        new_index=backend.new,
        load_index=lambda path: None,
        make_searcher=lambda index: SearchEngine(store, index, net),
        probe=lambda path: None,
    )
    return Library(components, root / "index.faiss")


def test_window_frames_are_indexed_under_the_video_and_deleted_with_it(backend: Backend, tmp_path: Path) -> None:  # noqa: F811
    store = FeatureStore(tmp_path / "features")
    library = _library(backend, store, tmp_path)
    plain, boxed = _video(1), _video(2, frames=10)
    assert library.add(1, plain, still_wanted=lambda: True)
    assert library.add(2, boxed, still_wanted=lambda: True, window=_window_of(boxed, 3))
    index = library._index
    assert index.frames_of(1) == 12 and index.frames_of(2) == 20  # the window's frames follow the video's
    assert store.get_window(1) is None and store.get_window(2) is not None

    # Re-indexed without a window: the earlier window goes from store and index.
    assert library.add(2, boxed, still_wanted=lambda: True)
    assert store.get_window(2) is None and index.frames_of(2) == 10
    assert library.add(2, boxed, still_wanted=lambda: True, window=_window_of(boxed, 3))

    # A rebuild from the store (after a crash) holds the windows too, on either backend.
    rebuilt = backend.new()
    rebuilt.rebuild(store)
    assert rebuilt.frames_of(2) == 20
    fresh = backend.new()
    assert reconcile_index(fresh, store) == (2, 0) and fresh.frames_of(2) == 20

    library.remove(2)
    assert 2 not in index and index.frames_of(2) == 0
    assert not store.window_path_for(2).exists() and 2 not in store
    _, videos, _ = index.search(store.get(1).frame_vectors, 40)
    assert set(videos[videos >= 0].tolist()) == {1}


def test_search_matches_a_query_with_a_videos_window(tmp_path: Path) -> None:
    """A boxed video whose own frames are unrelated to the query is found through its window, and
    the ranges are on the video's own time axis."""
    from indexer.vector_index import FaissIndex, IndexConfig

    store = FeatureStore(tmp_path)
    index = FaissIndex(IndexConfig(dim=DIM, pq_bytes=8))
    engine = SearchEngine(store, index, HapVRSimilarity(SimilarityConfig.training_free(dim=DIM)))
    inner = _video(10, frames=30)
    boxed = dataclasses.replace(_video(11, frames=30), timestamps=inner.timestamps + 100.0, duration=130.0)
    window = dataclasses.replace(inner, timestamps=boxed.timestamps, duration=boxed.duration)
    for video_id in range(1, 21):  # unrelated videos
        features = _video(100 + video_id, frames=20)
        store.put(video_id, features)
        index.add(video_id, features.frame_vectors)
    store.put(50, boxed)
    store.put_window(50, window)
    index.add(50, indexed_vectors(store, 50))

    query = edited_copy(np.random.default_rng(3), inner, start=5, length=15)
    hits = engine.search(query, k=3)
    assert hits[0].video_id == 50 and hits[0].score > 0.9
    segment = hits[0].segments[0]
    # Frames 5-19 of the inner clip sit at 105-119 s in the boxed video.
    assert 104.0 <= segment.target_start <= 106.0 and 118.0 <= segment.target_end <= 120.5

    # Without the window record the same video is not found.
    store.delete_window(50)
    index.add(50, indexed_vectors(store, 50))
    hits = engine.search(query, k=3)
    assert not hits or hits[0].video_id != 50 or hits[0].score < 0.5


def test_query_window_is_searched_as_a_variant(tmp_path: Path) -> None:
    """The other side: the query is the boxed one, its window a query variant (as the service passes it)."""
    from indexer.vector_index import FaissIndex, IndexConfig

    store = FeatureStore(tmp_path)
    index = FaissIndex(IndexConfig(dim=DIM, pq_bytes=8))
    engine = SearchEngine(store, index, HapVRSimilarity(SimilarityConfig.training_free(dim=DIM)))
    original = _video(20, frames=24)
    for video_id, features in {1: original, **{v: _video(200 + v, frames=20) for v in range(2, 20)}}.items():
        store.put(video_id, features)
        index.add(video_id, features.frame_vectors)
    boxed = _video(21, frames=24)  # the boxed query's whole frames: other footage
    window = dataclasses.replace(original, timestamps=boxed.timestamps)
    plain = engine.search(boxed, k=3)
    assert not plain or plain[0].video_id != 1 or plain[0].score < 0.5
    hits = engine.search(boxed, k=3, variants=[window])
    assert hits[0].video_id == 1 and hits[0].score > 0.9
