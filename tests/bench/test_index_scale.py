"""bench/index_scale.py end to end on a tiny index: build, reuse, latency, memory and recall."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.index_scale import flat_blocks
from bench.index_scale import main as index_scale
from bench.search_library import LibrarySpec


def run(tmp_path: Path, *options: str) -> list[dict]:
    results = tmp_path / "results" / "index_scale.md"
    results.parent.mkdir(exist_ok=True)
    argv = ["--videos", "300", "--threshold", "200", "--queries", "6", "--warmup", "1", "--k", "5"]
    assert index_scale([*argv, "--data-dir", str(tmp_path / "data"), "--results", str(results), *options]) == 0
    return [json.loads(line) for line in results.with_suffix(".jsonl").read_text().splitlines()]


def test_measures_the_approximate_index_and_reuses_its_build(tmp_path: Path) -> None:
    [first] = run(tmp_path, "--label", "first")
    spec = LibrarySpec(2.0, 10.0, 2026, 200)
    frames = sum(spec.draw(video_id).num_frames for video_id in range(1, 301))
    assert first["frames"] == frames and first["index"] == "ivfpq"
    assert first["queries"] == 6 and first["recall_queries"] == 6
    assert 0 < first["candidate_recall"] <= 1 and 0 <= first["best_candidate_recall"] <= 1
    assert first["bytes_per_video_minute"]["index_file"] > 0
    assert first["build"]["add_s"] > 0 and first["build"]["draw_s"] > 0
    # The flat copy holds every drawn frame vector, in video order, for the exhaustive search.
    vectors, owners = map(np.concatenate, zip(*flat_blocks(tmp_path / "data", block_frames=100), strict=True))
    assert len(vectors) == frames and owners[0] == 1 and owners[-1] == 300
    np.testing.assert_array_equal(vectors[owners == 7], spec.draw(7).frame_vectors)
    [_, second] = run(tmp_path, "--label", "second")
    assert second["build"] == first["build"]  # built once, reused
    table = (tmp_path / "results" / "index_scale.md").read_text()
    assert table.count("| first |") == 1 and table.count("| second |") == 1
