"""bench/bench_search.py and its parts: the scale benchmark end to end on a tiny library, the
library's growth and resumption, and exhaustive search against brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.bench_search import main as bench_search
from bench.candidate_recall import CandidateQuery, Recall, candidate_recall, exact_neighbours, top_videos
from bench.results_page import last_table
from bench.search_library import STORED_BYTES_PER_FRAME, LibraryMismatch, LibrarySpec, SyntheticLibrary
from indexer.feature_store import FeatureStore
from indexer.synthetic import synthetic_video


def scale_rows(results: Path) -> list[list[str]]:
    """The rows of search.md's last table (the one the benchmark appends to)."""
    return last_table((results / "search.md").read_text())[1]


def run_bench(tmp_path: Path, *options: str) -> dict:
    results = tmp_path / "results" / "search.md"
    argv = [
        "--queries",
        "6",
        "--warmup",
        "1",
        "--k",
        "5",
        "--candidates",
        "5",
        "--data-dir",
        str(tmp_path / "library"),
        "--results",
        str(results),
        *options,
    ]
    assert bench_search(argv) == 0
    return json.loads(results.with_suffix(".json").read_text())


def test_scale_benchmark_measures_every_size_over_the_approximate_index(tmp_path: Path) -> None:
    data = run_bench(tmp_path, "--sizes", "20,50", "--threshold", "200")
    assert list(data["sizes"]) == ["20", "50"]
    for size, run in data["sizes"].items():
        assert run["videos"] == int(size)
        assert run["index"] == "ivfpq" and run["ivf_cells"] >= 1
        assert 0.0 <= run["candidate_recall"] <= 1.0 and 0.0 <= run["best_candidate_recall"] <= 1.0
        assert run["recall_queries"] == 6
        assert run["queries"] == 6 and run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
        assert run["store_disk_bytes"] >= run["frames"] * STORED_BYTES_PER_FRAME
        assert run["index_file_bytes"] > 0
        assert run["bytes_per_video_minute"]["store_disk"] == pytest.approx(
            run["store_disk_bytes"] / (run["frames"] / 60)
        )
    build = data["sizes"]["50"]["build"]
    assert (build["generated"], build["reused"]) == (30, 0)  # grown from the 20-video index
    results = tmp_path / "results"
    assert [row[2] for row in scale_rows(results)] == ["20", "50"]
    assert (results / "search_latency.png").stat().st_size > 1000
    page = (results / "RESULTS.md").read_text()
    assert "| 50 | " in page and "search_latency.png" in page


def test_recall_of_a_flat_index_is_exact(tmp_path: Path) -> None:
    data = run_bench(tmp_path, "--sizes", "40", "--threshold", str(10**9))
    run = data["sizes"]["40"]
    assert run["index"] == "flat" and run["ivf_cells"] is None
    assert run["candidate_recall"] == run["candidate_recall_min"] == run["best_candidate_recall"] == 1.0


def test_rerun_reuses_the_library_and_keeps_the_latest_run_of_each_size(tmp_path: Path) -> None:
    run_bench(tmp_path, "--sizes", "30", "--threshold", "200")
    data = run_bench(tmp_path, "--sizes", "20,30", "--threshold", "200")
    assert data["sizes"]["30"]["build"]["build_s"] == 0.0  # loaded from its saved index
    build = data["sizes"]["20"]["build"]
    assert (build["generated"], build["reused"]) == (0, 20)
    assert [row[2] for row in scale_rows(tmp_path / "results")] == ["30", "20", "30"]


def test_library_grows_from_its_largest_saved_index_and_resumes_from_the_store(tmp_path: Path) -> None:
    spec = LibrarySpec(threshold=100)
    library = SyntheticLibrary(tmp_path, spec)
    small, build = library.open_index(10)
    assert (build.generated, build.reused) == (10, 0)
    large, build = library.open_index(25)
    assert (build.generated, build.reused) == (15, 0)
    assert large.video_ids() == set(range(1, 26))
    frames = large.num_frames
    for size in (10, 25):  # as if interrupted before any index was saved
        library.index_path(size).unlink()
    again, build = SyntheticLibrary(tmp_path, spec).open_index(25)
    assert (build.generated, build.reused) == (0, 25)
    assert again.num_frames == frames
    stored = library.store.get(7)
    fresh = FeatureStore(tmp_path / "fresh")  # the same draw through the store's format
    fresh.put(7, spec.draw(7))
    np.testing.assert_array_equal(stored.frame_vectors, fresh.get(7).frame_vectors)


def test_a_library_refuses_other_parameters(tmp_path: Path) -> None:
    SyntheticLibrary(tmp_path, LibrarySpec(max_seconds=50.0))
    with pytest.raises(LibraryMismatch):
        SyntheticLibrary(tmp_path, LibrarySpec(max_seconds=40.0))


def test_exhaustive_search_matches_brute_force_across_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = FeatureStore(tmp_path)
    vectors = {}
    for video_id in range(1, 13):
        features = synthetic_video(rng, int(rng.integers(3, 9)))
        store.put(video_id, features)
        vectors[video_id] = store.get(video_id).frame_vectors  # as stored: what the exhaustive search reads
    owners = np.concatenate([np.full(len(v), video_id) for video_id, v in vectors.items()])
    everything = np.concatenate(list(vectors.values()))
    queries = everything[[0, 17, 40]] + rng.standard_normal((3, everything.shape[1])).astype(np.float32) * 0.1
    scores, videos = exact_neighbours(store, list(vectors), queries, k=7, block_frames=10)
    brute = queries @ everything.T
    order = np.argsort(-brute, axis=1)[:, :7]
    np.testing.assert_allclose(scores, np.take_along_axis(brute, order, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(videos, owners[order])


def test_exhaustive_search_pads_past_the_stored_frames(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    store.put(1, synthetic_video(np.random.default_rng(1), 3))
    scores, videos = exact_neighbours(store, [1], store.get(1).frame_vectors, k=5)
    assert (videos[:, :3] == 1).all() and (videos[:, 3:] == -1).all()
    assert np.isneginf(scores[:, 3:]).all()


def test_top_videos_breaks_ties_by_id() -> None:
    assert top_videos({5: 0.9, 3: 0.5, 4: 0.5, 1: 0.1}, 2) == {5, 3}


def test_candidate_recall_counts_what_the_approximate_votes_miss(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    store = FeatureStore(tmp_path)
    for video_id in range(1, 6):
        store.put(video_id, synthetic_video(rng, 6))
    own_frames = store.get(3).frame_vectors  # video 3's own frames: it is the exact best candidate

    def recall(votes: dict[int, float]) -> Recall:
        query = CandidateQuery(votes=votes, vectors=own_frames, k=8, exclude=frozenset())
        [result] = candidate_recall(store, range(1, 6), [query], count=1)
        return result

    assert recall({3: 0.9, 4: 0.2}) == Recall(at_c=1.0, best_found=True)
    assert recall({4: 0.9, 3: 0.2}) == Recall(at_c=0.0, best_found=False)


def test_an_interrupted_index_save_is_rebuilt(tmp_path: Path) -> None:
    library = SyntheticLibrary(tmp_path, LibrarySpec())
    library.open_index(8)
    library.index_path(8).with_name("index-8.faiss.json").unlink()  # the sidecar is written last
    index, build = library.open_index(8)
    assert (build.generated, build.reused) == (0, 8) and index.video_ids() == set(range(1, 9))


def test_worker_processes_fill_the_store_as_this_process_does(tmp_path: Path) -> None:
    spec = LibrarySpec(threshold=100)
    alone, _ = SyntheticLibrary(tmp_path / "alone", spec).open_index(30)
    library = SyntheticLibrary(tmp_path / "workers", spec, workers=2)
    index, build = library.open_index(30)
    assert (build.generated, build.reused) == (30, 0)
    assert build.store_s > 0 and build.add_s > 0
    assert index.video_ids() == alone.video_ids() and index.num_frames == alone.num_frames
    for video_id in (1, 17, 30):
        np.testing.assert_array_equal(
            library.store.get(video_id).frame_vectors,
            FeatureStore(tmp_path / "alone" / "features").get(video_id).frame_vectors,
        )


def test_without_retraining_the_index_keeps_its_first_cells_as_it_grows(tmp_path: Path) -> None:
    spec = LibrarySpec(threshold=100)
    kept, _ = SyntheticLibrary(tmp_path / "kept", spec).open_index(120, retrain=False)
    retrained, _ = SyntheticLibrary(tmp_path / "retrained", spec).open_index(120)
    assert kept.num_frames > 4 * 100  # past retrain_growth x the frames it was first trained on
    assert kept.ivf_cells == 16  # the cells of its training at 100 frames (FAISS's minimum count)
    assert retrained.ivf_cells is not None and retrained.ivf_cells > kept.ivf_cells
