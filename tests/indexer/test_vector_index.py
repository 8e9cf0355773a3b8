"""Frame index: ids, add/remove/search, persistence, rebuild, the switch to IVF and its recall.

The behaviour tests run against both backends: FaissIndex and MilvusIndex on milvus-lite (a
real Milvus engine in this process, on a directory under the test's tmp_path).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from indexer.feature_store import FeatureStore
from indexer.milvus_index import MilvusConfig, MilvusIndex
from indexer.synthetic import random_unit, synthetic_video
from indexer.vector_index import (
    FRAME_BITS,
    MAX_VIDEO_ID,
    FaissIndex,
    IndexConfig,
    IndexLoadError,
    VectorIndex,
    pack_ids,
    pq_layout,
    read_sidecar,
    unpack_ids,
)

DIM = 64

# A fresh empty index of the backend under test; `reopen(index, path)` what a restart would find.
NewIndex = Callable[[], "FaissIndex | MilvusIndex"]


def _config(**overrides) -> IndexConfig:
    values = dict(dim=DIM, approximate_threshold=1_000_000, pq_bytes=8, nprobe=16)
    values.update(overrides)
    return IndexConfig(**values)


class Backend:
    """Builds indexes of one kind: `new()` an empty one (each a collection of its own for Milvus),
    `reopen(index, path)` what the next process would load after `index.save(path)`."""

    def __init__(self, kind: str, root: Path, uri: str | None = None) -> None:
        self.kind, self.root, self.count = kind, root, 0
        self.uri = uri or str(root / "milvus.db")

    def milvus_config(self, collection: str) -> MilvusConfig:
        return MilvusConfig(uri=self.uri, collection=collection, dim=DIM)

    def new(self):
        self.count += 1
        if self.kind == "faiss":
            return FaissIndex(_config())
        index = MilvusIndex(self.milvus_config(f"t{self.root.name[-24:].replace('-', '_')}_{self.count}"))
        index.num_frames  # creates the collection  # noqa: B018
        return index

    def reopen(self, index, path: Path):
        if self.kind == "faiss":
            return FaissIndex.load(path, _config())
        loaded = MilvusIndex.load(index.config)
        assert loaded is not None
        return loaded


# milvus: milvus-lite in this process; milvus-server: the standalone server (slow: it starts in ~40 s).
@pytest.fixture(params=["faiss", "milvus", pytest.param("milvus-server", marks=pytest.mark.slow)])
def backend(request, tmp_path: Path) -> Backend:
    if request.param == "milvus-server":
        return Backend("milvus", tmp_path, uri=request.getfixturevalue("milvus_server"))
    return Backend(request.param, tmp_path)


def assert_same_answers(got, expected) -> None:  # type: ignore[no-untyped-def]
    """Same videos and frames in the same order, same scores. Milvus may score a vector from its
    growing segment or from a sealed, indexed one, which differ in the last float32 bit."""
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[2], expected[2])
    np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1e-6)


def _videos(count: int, frames: int = 20, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        video_id: synthetic_video(rng, frames, dim=DIM, regions=4).frame_vectors for video_id in range(1, count + 1)
    }


def _filled(count: int = 30, backend: Backend | None = None, **overrides):
    index = backend.new() if backend is not None else FaissIndex(_config(**overrides))
    videos = _videos(count)
    for video_id, vectors in videos.items():
        index.add(video_id, vectors)
    return index, videos


def test_id_packing_round_trip_and_bounds() -> None:
    ids = pack_ids(MAX_VIDEO_ID, np.array([0, 1, (1 << FRAME_BITS) - 1]))
    assert (ids >= 0).all()
    videos, frames = unpack_ids(np.append(ids, -1))
    assert videos.tolist() == [MAX_VIDEO_ID] * 3 + [-1]
    assert frames.tolist() == [0, 1, (1 << FRAME_BITS) - 1, -1]
    with pytest.raises(ValueError):
        pack_ids(MAX_VIDEO_ID + 1, np.array([0]))
    with pytest.raises(ValueError):
        pack_ids(1, np.array([1 << FRAME_BITS]))


def test_search_finds_the_exact_frame(backend: Backend) -> None:
    index, videos = _filled(backend=backend)
    assert isinstance(index, VectorIndex)
    assert index.kind == ("flat" if backend.kind == "faiss" else "milvus-hnsw")
    assert index.num_videos == 30 and index.num_frames == 600 and index.frames_of(7) == 20
    scores, video_ids, frame_ids = index.search(videos[7][[3, 11]], k=5)
    assert scores.shape == video_ids.shape == frame_ids.shape == (2, 5)
    assert video_ids[:, 0].tolist() == [7, 7] and frame_ids[:, 0].tolist() == [3, 11]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_empty_index_and_short_results(backend: Backend) -> None:
    index = backend.new()
    scores, video_ids, frame_ids = index.search(random_unit(np.random.default_rng(0), (3, DIM)), k=4)
    assert (video_ids == -1).all() and (frame_ids == -1).all() and np.isneginf(scores).all()
    index.add(5, random_unit(np.random.default_rng(1), (2, DIM)))
    scores, video_ids, _ = index.search(random_unit(np.random.default_rng(2), (1, DIM)), k=4)
    assert video_ids[0].tolist()[:2] == [5, 5] and video_ids[0].tolist()[2:] == [-1, -1]
    assert np.isneginf(scores[0, 2:]).all()


def test_remove_drops_every_frame_of_that_video_only(backend: Backend) -> None:
    index, videos = _filled(backend=backend)
    assert index.remove(7) == 20
    assert index.remove(7) == 0
    assert 7 not in index and 8 in index and index.num_frames == 580
    _, video_ids, _ = index.search(np.concatenate(list(videos.values())), k=50)
    assert 7 not in set(video_ids.ravel().tolist())
    _, video_ids, frame_ids = index.search(videos[8], k=1)
    assert video_ids.ravel().tolist() == [8] * 20 and frame_ids.ravel().tolist() == list(range(20))


def test_adding_a_video_again_replaces_it(backend: Backend) -> None:
    index, videos = _filled(5, backend=backend)
    index.add(3, videos[4][:6])
    assert index.frames_of(3) == 6 and index.num_frames == 4 * 20 + 6
    _, video_ids, frame_ids = index.search(videos[4][:6], k=2)
    assert sorted(video_ids[:, :2].ravel().tolist()) == [3] * 6 + [4] * 6
    assert video_ids[0].tolist() != [-1, -1] and frame_ids[:, 0].tolist() == list(range(6))


def test_rejects_wrong_shapes(backend: Backend) -> None:
    index = backend.new()
    with pytest.raises(ValueError, match=r"\[N, 64\]"):
        index.add(1, np.zeros((3, 32), np.float32))
    with pytest.raises(ValueError):
        index.search(np.zeros((3, 32), np.float32), k=1)


def test_save_and_load_give_the_same_answers(backend: Backend, tmp_path: Path) -> None:
    index, videos = _filled(backend=backend)
    path = tmp_path / "index" / "frames.faiss"
    index.save(path)
    loaded = backend.reopen(index, path)
    assert loaded.video_ids() == index.video_ids() == set(range(1, 31))
    queries = videos[12]
    assert_same_answers(loaded.search(queries, 8), index.search(queries, 8))
    loaded.remove(1)
    assert 1 not in loaded and loaded.num_frames == 580


def test_saved_faiss_index_and_its_sidecar(tmp_path: Path) -> None:
    index, videos = _filled()
    assert index.dirty
    path = tmp_path / "index" / "frames.faiss"
    saved = index.save(path)
    assert not index.dirty
    sidecar = read_sidecar(path)
    assert sidecar is not None
    assert (sidecar.kind, sidecar.frames, sidecar.videos) == ("flat", 600, 30)
    assert sidecar.generation == saved.generation and sidecar.updated_at == saved.updated_at
    loaded = FaissIndex.load(path, _config())
    assert loaded.video_ids() == index.video_ids() and not loaded.dirty
    queries = videos[12]
    for got, expected in zip(loaded.search(queries, 8), index.search(queries, 8)):
        np.testing.assert_array_equal(got, expected)
    loaded.remove(1)
    assert loaded.dirty and loaded.generation == saved.generation + 1


def test_load_refuses_missing_or_torn_files(tmp_path: Path) -> None:
    path = tmp_path / "frames.faiss"
    with pytest.raises(IndexLoadError, match="missing"):
        FaissIndex.load(path)
    index, _ = _filled(3)
    index.save(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IndexLoadError, match="sidecar"):
        FaissIndex.load(path)
    index.save(path)
    path.with_name("frames.faiss.json").write_text("{not json")
    with pytest.raises(IndexLoadError, match="unreadable"):
        FaissIndex.load(path)


def test_rebuild_and_reconcile_from_the_store(backend: Backend, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    store = FeatureStore(tmp_path / "features")
    for video_id in range(1, 11):
        store.put(video_id, synthetic_video(rng, 12, dim=DIM, regions=4))
    live = backend.new()
    for video_id in store.ids():
        live.add(video_id, store.get(video_id).frame_vectors)

    rebuilt = backend.new()
    rebuilt.add(99, random_unit(rng, (4, DIM)))  # stale content is replaced
    assert rebuilt.rebuild(store) == 10
    assert rebuilt.video_ids() == set(range(1, 11))
    queries = store.get(4).frame_vectors
    assert_same_answers(rebuilt.search(queries, 5), live.search(queries, 5))

    # After a crash the index may lag or lead the store; reconcile touches only the difference.
    live.remove(2)
    live.add(99, random_unit(rng, (4, DIM)))
    assert live.reconcile(store) == (1, 1)
    assert live.video_ids() == set(range(1, 11))
    assert live.reconcile(store, video_ids=[1, 2, 3]) == (0, 7)
    assert live.video_ids() == {1, 2, 3}


def _vote_top(index: FaissIndex, vectors: np.ndarray, count: int = 10) -> list[int]:
    """Top videos by summed per-frame best score, the way the search engine picks candidates."""
    scores, video_ids, _ = index.search(vectors, k=20)
    votes: dict[int, float] = {}
    for row_scores, row_ids in zip(scores, video_ids):
        best: dict[int, float] = {}
        for score, video_id in zip(row_scores, row_ids):
            if video_id >= 0:
                best[video_id] = max(best.get(video_id, -1.0), float(score))
        for video_id, score in best.items():
            votes[video_id] = votes.get(video_id, 0.0) + score
    return sorted(votes, key=votes.get, reverse=True)[:count]


def _recall_at_10(approximate: FaissIndex, exact: FaissIndex, queries: np.ndarray) -> float:
    """1-recall@10: share of query vectors whose exact nearest frame is among the approximate top 10."""
    _, exact_videos, exact_frames = exact.search(queries, k=1)
    _, videos, frames = approximate.search(queries, k=10)
    found = (videos == exact_videos) & (frames == exact_frames)
    return float(found.any(axis=1).mean())


@pytest.mark.parametrize("kind", ["ivfpq", "ivfflat"])
def test_switch_to_ivf_at_the_threshold_keeps_candidate_recall(kind: str) -> None:
    rng = np.random.default_rng(5)
    videos = {
        video_id: synthetic_video(rng, int(rng.integers(20, 60)), dim=DIM, regions=4).frame_vectors
        for video_id in range(1, 201)
    }
    exact = FaissIndex(_config())
    approximate = FaissIndex(_config(approximate_threshold=4000, approximate_kind=kind))
    for video_id, vectors in videos.items():
        exact.add(video_id, vectors)
        approximate.add(video_id, vectors)
    assert exact.kind == "flat" and approximate.kind == kind
    assert approximate.num_frames == exact.num_frames and approximate.video_ids() == exact.video_ids()

    # Queries: noisy excerpts of indexed videos, as an edited copy would give.
    queries = {}
    for video_id in range(1, 201, 10):
        excerpt = videos[video_id][5:20]
        noisy = excerpt + random_unit(rng, excerpt.shape) * 0.4
        queries[video_id] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    all_queries = np.concatenate(list(queries.values()))
    assert _recall_at_10(approximate, exact, all_queries) >= 0.95
    for video_id, vectors in queries.items():
        # Candidate recall: the source ranks first by votes in both, the first 3 candidates agree.
        exact_top, approximate_top = _vote_top(exact, vectors), _vote_top(approximate, vectors)
        assert exact_top[0] == approximate_top[0] == video_id
        _, video_ids, _ = approximate.search(vectors, k=1)
        assert np.mean(video_ids[:, 0] == video_id) >= 0.9

    approximate.remove(11)
    assert 11 not in approximate and approximate.num_frames == exact.num_frames - len(videos[11])
    _, video_ids, _ = approximate.search(queries[11], k=20)
    assert 11 not in video_ids


def _hold_training(monkeypatch) -> tuple[threading.Event, threading.Event, Callable]:
    """Make IVF training wait for `release` once it has set `started`; returns them and the real trainer."""
    import indexer.vector_index as module

    train = module._train_approximate
    started, release = threading.Event(), threading.Event()

    def slow_train(config, vectors):
        started.set()
        release.wait(30)
        return train(config, vectors)

    monkeypatch.setattr(module, "_train_approximate", slow_train)
    return started, release, train


def test_changes_during_training_are_kept(monkeypatch) -> None:
    """Adds and removes made while the IVF index trains off-lock are replayed into it."""
    index = FaissIndex(_config(approximate_threshold=2000, approximate_kind="ivfflat"))
    videos = _videos(110, frames=20, seed=9)
    for video_id in range(1, 100):
        index.add(video_id, videos[video_id])
    assert index.kind == "flat"

    started, release, _ = _hold_training(monkeypatch)
    switcher = threading.Thread(target=index.add, args=(100, videos[100]))
    switcher.start()
    assert started.wait(30)
    index.add(101, videos[101])  # lands in the flat index while training runs
    index.remove(5)
    index.add(6, videos[102])
    scores, video_ids, _ = index.search(videos[101], k=1)  # searches keep working
    assert video_ids[:, 0].tolist() == [101] * 20
    release.set()
    switcher.join(60)
    assert index.kind == "ivfflat"
    assert index.video_ids() == set(range(1, 102)) - {5}
    assert index.num_frames == 100 * 20
    _, video_ids, _ = index.search(videos[102], k=1)
    assert (video_ids[:, 0] == 6).mean() >= 0.9


def test_a_rebuild_during_training_wins(monkeypatch, tmp_path: Path) -> None:
    import indexer.vector_index as module

    rng = np.random.default_rng(12)
    store = FeatureStore(tmp_path / "features")
    for video_id in (500, 501):
        store.put(video_id, synthetic_video(rng, 30, dim=DIM, regions=4))
    index = FaissIndex(_config(approximate_threshold=2000, approximate_kind="ivfflat"))
    videos = _videos(100, frames=20, seed=13)
    for video_id in range(1, 100):
        index.add(video_id, videos[video_id])
    started, release, train = _hold_training(monkeypatch)
    switcher = threading.Thread(target=index.add, args=(100, videos[100]))
    switcher.start()
    assert started.wait(30)
    monkeypatch.setattr(module, "_train_approximate", train)
    index.rebuild(store)  # the store holds two videos only
    release.set()
    switcher.join(60)
    assert index.video_ids() == {500, 501} and index.kind == "flat"


def _stored_library(root: Path, count: int, frames: int, seed: int) -> FeatureStore:
    rng = np.random.default_rng(seed)
    store = FeatureStore(root)
    for video_id in range(1, count + 1):
        store.put(video_id, synthetic_video(rng, frames, dim=DIM, regions=4))
    return store


def _finds_itself(index: FaissIndex, store: FeatureStore, video_ids: list[int]) -> None:
    for video_id in video_ids:
        _, found, _ = index.search(store.get(video_id).frame_vectors, k=1)
        assert (found[:, 0] == video_id).mean() >= 0.9, video_id


def test_an_ivf_index_retrains_in_the_background_once_it_outgrows_its_training(monkeypatch, tmp_path: Path) -> None:
    """Past 4x its training size the index retrains from the store off-lock: searches keep working
    on the old cells meanwhile, changes made meanwhile are kept, and then the cells are more."""
    store = _stored_library(tmp_path / "features", 230, frames=40, seed=21)
    index = FaissIndex(_config(approximate_threshold=2000, retrain_growth=4.0), store)
    for video_id in range(1, 51):
        index.add(video_id, store.get(video_id).frame_vectors)
    assert index.kind == "ivfpq" and (index.ivf_cells, index.nprobe) == (51, 16)  # trained at 2,000 frames
    started, release, _ = _hold_training(monkeypatch)
    for video_id in range(51, 200):  # 7,960 frames: not yet 4x
        index.add(video_id, store.get(video_id).frame_vectors)
    assert not started.is_set() and index.wait_for_training(0)
    index.add(200, store.get(200).frame_vectors)  # 8,000 frames: retraining starts
    assert started.wait(30)
    assert index.ivf_cells == 51 and not index.wait_for_training(0)
    _finds_itself(index, store, [3, 120, 200])  # the old cells answer meanwhile
    index.add(201, store.get(201).frame_vectors)
    index.remove(7)
    index.add(8, store.get(202).frame_vectors)
    _finds_itself(index, store, [201])
    release.set()
    assert index.wait_for_training(60)
    assert index.ivf_cells == 205  # min(4 sqrt(8,000), 8,000 / 39)
    assert index.nprobe == 64  # the same share of the cells as before: 16 of 51
    assert index.video_ids() == set(range(1, 202)) - {7} and index.num_frames == 200 * 40
    _finds_itself(index, store, [3, 120, 200, 201])
    _, found, _ = index.search(store.get(202).frame_vectors, k=1)
    assert (found[:, 0] == 8).mean() >= 0.9


def test_a_loaded_index_that_outgrew_its_training_retrains(tmp_path: Path) -> None:
    store = _stored_library(tmp_path / "features", 120, frames=40, seed=22)
    grown = FaissIndex(_config(approximate_threshold=1000, retrain_growth=None))
    for video_id in store.ids():
        grown.add(video_id, store.get(video_id).frame_vectors)
    grown.save(tmp_path / "index.faiss")
    assert grown.ivf_cells == 25 and read_sidecar(tmp_path / "index.faiss") is not None

    config = _config(approximate_threshold=1000, retrain_growth=4.0)
    without_store = FaissIndex.load(tmp_path / "index.faiss", config)  # PQ codes cannot be retrained from
    assert without_store.wait_for_training(0) and without_store.ivf_cells == 25
    loaded = FaissIndex.load(tmp_path / "index.faiss", config, store)
    assert loaded.wait_for_training(60)
    assert loaded.ivf_cells == 123 and loaded.num_frames == 4800 and loaded.dirty  # min(4 sqrt(4,800), 4,800 / 39)
    _finds_itself(loaded, store, [1, 60, 120])
    loaded.save(tmp_path / "index.faiss")
    again = FaissIndex.load(tmp_path / "index.faiss", config, store)  # trained for its size now
    assert again.wait_for_training(0) and again.ivf_cells == 123


def test_ivf_flat_retrains_from_its_own_vectors() -> None:
    videos = _videos(120, frames=40, seed=23)
    index = FaissIndex(_config(approximate_threshold=1000, approximate_kind="ivfflat", retrain_growth=4.0))
    for video_id, vectors in videos.items():
        index.add(video_id, vectors)
    assert index.wait_for_training(60)
    assert index.kind == "ivfflat" and index.ivf_cells == 102  # retrained at 4,000 frames
    _, found, _ = index.search(videos[77], k=1)
    assert (found[:, 0] == 77).all()


@pytest.mark.parametrize(
    ("dim", "pq_bytes", "layout"),
    [
        (512, 64, (512, 128)),  # the shipped model: 4 dims a sub-quantiser
        (48, 16, (48, 24)),  # an even divisor at least half the most allowed
        (287, 64, (384, 128)),  # no even divisor (PCA fitted on a small folder): padded
        (514, 64, (640, 128)),  # only 2 divides it: padded rather than 257 dims a sub-quantiser
        (6, 64, (6, 6)),
        (1, 64, (2, 2)),
    ],
)
def test_every_dimension_has_a_pq_layout(dim: int, pq_bytes: int, layout: tuple[int, int]) -> None:
    assert pq_layout(dim, pq_bytes) == layout
    padded, subquantizers = layout
    assert padded >= dim and padded % subquantizers == 0 and subquantizers % 2 == 0
    assert subquantizers <= 2 * pq_bytes


@pytest.mark.parametrize("dim", [287, 37])
def test_an_odd_dimension_is_served_approximately(dim: int, tmp_path: Path) -> None:
    """A dimension PQ cannot split is padded by a rotation: recall holds, and it survives save and load."""
    rng = np.random.default_rng(dim)
    videos = {video_id: synthetic_video(rng, 30, dim=dim, regions=2).frame_vectors for video_id in range(1, 101)}
    config = IndexConfig(dim=dim, approximate_threshold=2000, nprobe=16)
    exact, approximate = FaissIndex(IndexConfig(dim=dim)), FaissIndex(config)
    for video_id, vectors in videos.items():
        exact.add(video_id, vectors)
        approximate.add(video_id, vectors)
    assert approximate.kind == "ivfpq" and approximate.num_frames == 3000
    noisy = np.concatenate([videos[v][:10] for v in range(1, 101, 10)])
    noisy = noisy + random_unit(rng, noisy.shape) * 0.3
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    assert _recall_at_10(approximate, exact, noisy) >= 0.9
    approximate.remove(1)
    path = tmp_path / "frames.faiss"
    approximate.save(path)
    loaded = FaissIndex.load(path, config)
    assert loaded.kind == "ivfpq" and loaded.video_ids() == set(range(2, 101))
    for got, expected in zip(loaded.search(noisy, 5), approximate.search(noisy, 5)):
        np.testing.assert_array_equal(got, expected)


def test_rebuild_past_the_threshold_trains_ivf(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    store = FeatureStore(tmp_path / "features")
    for video_id in range(60):
        store.put(video_id, synthetic_video(rng, 40, dim=DIM, regions=4))
    index = FaissIndex(_config(approximate_threshold=2000))
    index.rebuild(store)
    assert index.kind == "ivfpq" and index.num_frames == 2400
    path = tmp_path / "frames.faiss"
    index.save(path)
    loaded = FaissIndex.load(path, _config(approximate_threshold=2000))
    assert loaded.kind == "ivfpq" and loaded.video_ids() == set(range(60))
    query = store.get(17).frame_vectors
    for got, expected in zip(loaded.search(query, 5), index.search(query, 5)):
        np.testing.assert_array_equal(got, expected)


def test_concurrent_searches_and_changes(backend: Backend) -> None:
    index, videos = _filled(20, backend=backend)
    extra = _videos(40, seed=11)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for video_id in range(21, 41):
                index.add(video_id, extra[video_id])
                index.remove(video_id - 20)
        except BaseException as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    def reader() -> None:
        try:
            for _ in range(50):
                scores, video_ids, _ = index.search(videos[20], k=5)
                assert scores.shape == (20, 5)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert index.video_ids() == set(range(21, 41)) and index.num_frames == 400


def _refine_library(seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {video_id: synthetic_video(rng, 30, dim=DIM, regions=4).frame_vectors for video_id in range(1, 101)}


def pack_ids_rows(videos: np.ndarray, frames: np.ndarray) -> np.ndarray:
    return (videos.astype(np.int64) << FRAME_BITS) | frames


def _top_overlap(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, expected)]))


def test_refined_ivfpq_gives_the_exact_top_hits() -> None:
    """With an 8-bit refine part, clean queries get the exact index's top frames and near-exact scores;
    without it the coarse 4-bit PQ order misses some of them."""
    videos = _refine_library(31)
    exact = FaissIndex(_config())
    refined = FaissIndex(_config(approximate_threshold=2000, refine_factor=8))
    coarse = FaissIndex(_config(approximate_threshold=2000))
    for video_id, vectors in videos.items():
        for index in (exact, refined, coarse):
            index.add(video_id, vectors)
    assert refined.kind == coarse.kind == "ivfpq" and refined.num_frames == 3000
    assert refined.refine_factor == 8 and coarse.refine_factor is None
    queries = np.concatenate([videos[v][::6] for v in range(1, 101, 7)])
    exact_scores, exact_videos, exact_frames = exact.search(queries, k=5)
    scores, found_videos, found_frames = refined.search(queries, k=5)
    np.testing.assert_array_equal(found_videos[:, 0], exact_videos[:, 0])
    np.testing.assert_array_equal(found_frames[:, 0], exact_frames[:, 0])
    expected = pack_ids_rows(exact_videos, exact_frames)
    # Neighbouring frames score almost alike: 8-bit scores may swap them, so compare the top 5 as sets.
    overlap = _top_overlap(pack_ids_rows(found_videos, found_frames), expected)
    assert overlap >= 0.95
    np.testing.assert_allclose(scores[:, :3], exact_scores[:, :3], atol=0.02)
    _, coarse_videos, coarse_frames = coarse.search(queries, k=5)
    assert _top_overlap(pack_ids_rows(coarse_videos, coarse_frames), expected) < overlap


def test_refined_index_removes_saves_loads_and_retrains(tmp_path: Path) -> None:
    store = _stored_library(tmp_path / "features", 230, frames=40, seed=32)
    config = _config(approximate_threshold=2000, retrain_growth=4.0, refine_factor=4)
    index = FaissIndex(config, store)
    for video_id in range(1, 101):
        index.add(video_id, store.get(video_id).frame_vectors)
    assert index.refine_factor == 4 and index.wait_for_training(60)
    assert index.remove(7) == 40 and 7 not in index
    _, found, _ = index.search(store.get(7).frame_vectors, k=20)
    assert 7 not in found
    _finds_itself(index, store, [3, 50, 100])

    path = tmp_path / "frames.faiss"
    index.save(path)
    loaded = FaissIndex.load(path, config, store)
    assert loaded.refine_factor == 4 and loaded.video_ids() == index.video_ids()
    first_cells = loaded.ivf_cells
    query = store.get(42).frame_vectors
    for got, expected in zip(loaded.search(query, 5), index.search(query, 5)):
        np.testing.assert_array_equal(got, expected)
    assert FaissIndex.load(path, _config(refine_factor=2)).refine_factor == 2  # the config sets the shortlist

    for video_id in range(101, 231):  # past 4x its training: retrains in the background
        loaded.add(video_id, store.get(video_id).frame_vectors)
    loaded.remove(120)  # logged during the retraining, replayed before the swap
    assert loaded.wait_for_training(120)
    assert loaded.ivf_cells > first_cells and loaded.refine_factor == 4 and loaded.num_frames == 228 * 40
    assert 120 not in loaded
    _finds_itself(loaded, store, [3, 150, 230])
    _, found, _ = loaded.search(store.get(120).frame_vectors, k=20)
    assert 120 not in found
