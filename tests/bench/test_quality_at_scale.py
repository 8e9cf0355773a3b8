"""bench.quality_at_scale end to end on a tiny benchmark and a few distractors cut from real footage."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bench.dataset import PRESETS, build_dataset, load_dataset
from bench.footage import FootageUnavailable
from bench.quality_at_scale import MAX_FRAMES, MIN_FRAMES, PoolSpec, compose_distractor, run, write_report
from indexer.feature_store import FeatureStore

TINY = dataclasses.replace(PRESETS["small"], segments=2, kinds=("crop", "hflip"), distractors=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_dataset(tmp_path_factory.mktemp("benchmark"), TINY, fetch=False, log=lambda _: None)
    except FootageUnavailable as exc:
        pytest.skip(f"real footage unavailable: {exc}")


def test_benchmark_inside_distractors_scores_both_ways(tiny: Path, source_clips: list[Path], tmp_path: Path) -> None:
    dataset = load_dataset(tiny)
    sources = source_clips[-2:]
    outcome = run(dataset, sources, 12, tmp_path, spec=PoolSpec(versions=2, max_frames=8), k=20, log=lambda _: None)

    # 2 originals with a crop and a flip each, and one distractor: 6 queries, 7 videos.
    for name in ("without", "with"):
        metrics = outcome.metrics[name]
        assert metrics["queries"] == len(dataset.queries) == 6 and len(dataset.names) == 7
        assert 0.0 <= metrics["mAP"] <= 1.0 and 0.0 <= metrics["uAP"] <= 1.0
        assert 0.0 < metrics["positives returned"] <= 1.0
    # Without distractors none can be returned; the index with them returns some (k = 20 > 7 videos).
    assert outcome.metrics["without"]["distractors returned per query"] == 0.0
    assert outcome.metrics["with"]["distractors returned per query"] > 0.0
    # Crops and flips of an original are found among a dozen distractors.
    assert outcome.metrics["with"]["mAP"] > 0.5
    assert outcome.pool_entries == 4 and outcome.build.stored_now == 12

    # The store holds the benchmark (ids 1..7) then the distractors, each re-cut from pool frames.
    store = FeatureStore(next(tmp_path.glob("store-*")), verify=False)
    assert sorted(store.ids()) == list(range(1, 7 + 12 + 1))
    pool_file = next(tmp_path.glob("pool-*.npz"))
    with np.load(pool_file) as stored:
        pool_vectors = np.concatenate([stored[f"v{i}"] for i in range(4)])
    for video_id in range(8, 20):
        features = store.get(video_id)
        assert 1 <= features.num_frames <= MAX_FRAMES  # runs are cut short by the tiny pool's 8-frame entries
        nearest = (features.frame_vectors @ pool_vectors.T).max(axis=1)
        assert nearest.min() > 0.95  # every frame is a pooled real frame (up to the store's compact codes)

    results = tmp_path / "quality_scale.md"
    write_report(outcome, results, "python -m bench.quality_at_scale --distractors 12", dataset, ("0.1", "0.2"))
    text = results.read_text()
    assert "| 12 |" in text and "mAP drop" in text
    assert json.loads(results.with_suffix(".json").read_text())["distractors"] == 12

    # A second run reuses the pool and the stored distractors.
    again = run(dataset, sources, 12, tmp_path, spec=PoolSpec(versions=2, max_frames=8), k=20, log=lambda _: None)
    assert again.pool_cached and again.build.stored_now == 0
    assert again.metrics == outcome.metrics


def test_distractor_is_runs_of_pool_frames() -> None:
    from bench.quality_at_scale import Pool, _frames

    rng = np.random.default_rng(0)
    entries = [_frames(rng.normal(size=(60, 9, 8)), rng.normal(size=(60, 8))) for _ in range(3)]
    pool = Pool(entries, ["a", "b", "c"], 0.0)
    for seed in range(50):
        video = compose_distractor(pool, np.random.default_rng(seed))
        assert MIN_FRAMES <= video.num_frames <= MAX_FRAMES
        assert np.array_equal(video.timestamps, np.arange(video.num_frames))
        # Each frame is a frame of one entry; consecutive frames of a run are consecutive there.
        rows = []
        for row in video.frame_vectors:
            for number, entry in enumerate(pool.entries):
                found = np.flatnonzero((entry.frame_vectors == row).all(axis=1))
                if found.size:
                    rows.append((number, int(found[0])))
        assert len(rows) == video.num_frames
        breaks = sum(1 for a, b in zip(rows, rows[1:]) if not (a[0] == b[0] and b[1] == a[1] + 1))
        assert breaks <= 2
