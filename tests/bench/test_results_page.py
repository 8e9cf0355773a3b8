"""bench/results_page.py: the one-page summary builds from the checked-in results, from missing or
damaged ones, and decides each target from the numbers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bench import results_page
from bench.results_page import MET, NOT_MET, NOT_RUN, PAGE, RESULTS_DIR, build_page, refresh

TARGETS = 9


def target_rows(page: str) -> dict[str, str]:
    """target text -> status, from the page's targets table."""
    table = page.split("## Targets", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| .+? \| \*\*(.+?)\*\* \|$", table, flags=re.MULTILINE)
    return dict(rows)


def statuses(page: str) -> list[str]:
    return list(target_rows(page).values())


@pytest.fixture
def shipped_training_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results_page, "shipped_method", lambda: "training-free")


def write_quality(results: Path, ours: tuple[float, float], vpdq: tuple[float, float] | None) -> None:
    overall = {"training-free": {"mAP": ours[0], "uAP": ours[1], "R@1": 1.0, "queries": 10.0}}
    methods = {"training-free": {"skipped": None}, "vpdq": {"skipped": None if vpdq else "vpdq not installed"}}
    if vpdq:
        overall["vpdq"] = {"mAP": vpdq[0], "uAP": vpdq[1], "R@1": 0.5, "queries": 10.0}
    numbers = {
        "command": "python -m bench.quality --dataset small",
        "dataset": "abc",
        "methods": methods,
        "overall": overall,
    }
    (results / "quality.json").write_text(json.dumps(numbers))


def write_scores(results: Path, published: tuple[float, float]) -> None:
    numbers = {
        "command": "python -m bench.quality --dataset small --methods default,aligned-window",
        "methods": {"default": {"skipped": None}, "aligned-window": {"skipped": None}},
        "overall": {
            "default": {"mAP": 0.5, "uAP": 0.4, "R@1": 0.6, "queries": 10.0},
            "aligned-window": {"mAP": published[0], "uAP": published[1], "R@1": 0.9, "queries": 10.0},
        },
    }
    (results / "scores.json").write_text(json.dumps(numbers))


def write_scale(results: Path, distractors: int, without: float, with_: float) -> None:
    metrics = {
        name: {"mAP": value, "uAP": value - 0.05, "R@1": 0.9, "queries": 10.0}
        for name, value in (("without", without), ("with", with_))
    }
    (results / "quality_scale.json").write_text(json.dumps({"distractors": distractors, "metrics": metrics}))


def write_ingest(results: Path, ours_s: str, vpdq_s: str) -> None:
    (results / "ingest.md").write_text(
        "# Ingest throughput\n\n| date | machine | files | video s | ours s | vPDQ s | note |\n"
        "|---|---|---|---|---|---|---|\n"
        "| 2026-01-01 10:00 | x | 4 | 40 | 9.0 | 1.0 | an older, slower run |\n"
        f"| 2026-01-02 10:00 | x | 4 | 40 | {ours_s} | {vpdq_s} | |\n"
    )


def write_memory(results: Path, peak_mb: str) -> None:
    (results / "memory.md").write_text(
        "# Memory\n\n| date | machine | phase | answers | seconds | base MB | peak MB | load |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| 2026-01-01 10:00 | x | 2 x 7000 s clip search | 422 | 1.0 | 900 | 9000 | 1 |\n"
        f"| 2026-01-02 10:00 | x | 2 x 7000 s clip search | 422 | 1.0 | 900 | {peak_mb} | 1 |\n"
        "| 2026-01-02 10:00 | x | index 7000 s video | ready | 100 | 900 | 5000 | 1 |\n"
    )


def search_run(videos: int, p95: float) -> dict:
    return {
        "videos": videos,
        "video_minutes": videos / 3,
        "index": "ivfpq",
        "p50_ms": p95 / 2,
        "p95_ms": p95,
        "p99_ms": p95 * 1.2,
        "candidate_recall": 0.9,
        "best_candidate_recall": 1.0,
        "candidates": 100,
        "load_avg": 0.5,
        "machine": "AMD EPYC, 2 cores",
        "date": "2026-01-03 10:00",
        "bytes_per_video_minute": {"index_file": 4000.0, "index_resident": None, "store_disk": 680000.0},
    }


def write_search(results: Path, *runs: dict) -> None:
    data = {
        "library": {"min_seconds": 5.0, "max_seconds": 50.0, "seed": 1, "threshold": None},
        "sizes": {str(run["videos"]): run for run in runs},
    }
    (results / "search.json").write_text(json.dumps(data))


def test_checked_in_page_is_current_with_the_checked_in_results() -> None:
    page = build_page(RESULTS_DIR, PAGE)
    assert len(statuses(page)) == TARGETS
    assert set(statuses(page)) <= {MET, NOT_MET, NOT_RUN}
    for title in (
        "Retrieval quality",
        "Published score",
        "Quality among distractors",
        "Frame encoder",
        "Exact similarity",
        "Ingest",
        "Search at scale",
        "Service memory",
    ):
        assert f"## {title}" in page
    assert "](results/quality_per_kind.png)" in page
    assert PAGE.read_text() == page, "bench/RESULTS.md is stale: run `python -m bench.results_page`"


def test_missing_results_show_as_not_run(tmp_path: Path, shipped_training_free: None) -> None:
    page = refresh(tmp_path).read_text()
    assert statuses(page) == [NOT_RUN] * TARGETS
    assert page.count("Not run: no `") == 9
    assert "![" not in page  # no links to plots that are not there


def test_damaged_results_are_reported_not_raised(tmp_path: Path, shipped_training_free: None) -> None:
    (tmp_path / "quality.json").write_text("{not json")
    (tmp_path / "search.json").write_text(json.dumps({"sizes": {}}))
    (tmp_path / "encoder.md").write_text("# Frame encoder\n\nno table yet\n")
    (tmp_path / "scores.json").write_text(json.dumps({"overall": {}}))
    (tmp_path / "quality_scale.json").write_text("[]")
    page = build_page(tmp_path, tmp_path / "RESULTS.md")
    assert page.count("Unreadable: `") == 5
    assert statuses(page) == [NOT_RUN] * TARGETS


def test_targets_met_from_the_numbers(tmp_path: Path, shipped_training_free: None) -> None:
    write_quality(tmp_path, ours=(0.96, 0.91), vpdq=(0.6, 0.5))
    write_scores(tmp_path, published=(0.91, 0.86))
    write_scale(tmp_path, 100_000, without=0.91, with_=0.895)
    write_ingest(tmp_path, ours_s="1.5", vpdq_s="2.0")
    write_search(tmp_path, search_run(1000, 60.0), search_run(100_000, 149.0))
    write_memory(tmp_path, peak_mb="1500")
    page = build_page(tmp_path, tmp_path / "RESULTS.md")
    assert statuses(page) == [MET] * TARGETS
    assert "| 100,000 | " in page and "| 1,000 | " in page


def test_targets_not_met_from_the_numbers(tmp_path: Path, shipped_training_free: None) -> None:
    write_quality(tmp_path, ours=(0.94, 0.95), vpdq=(0.95, 0.5))  # µAP met; mAP low and behind vPDQ
    write_scores(tmp_path, published=(0.89, 0.86))  # µAP met, mAP short
    write_scale(tmp_path, 100_000, without=0.9, with_=0.879)  # a drop of 0.021
    write_ingest(tmp_path, ours_s="2.5", vpdq_s="2.0")
    write_search(tmp_path, search_run(100_000, 150.0))
    write_memory(tmp_path, peak_mb="2100")
    page = build_page(tmp_path, tmp_path / "RESULTS.md")
    assert statuses(page) == [NOT_MET, MET, NOT_MET, NOT_MET, MET, NOT_MET, NOT_MET, NOT_MET, NOT_MET]


def test_targets_that_lack_a_measurement_are_not_run(tmp_path: Path, shipped_training_free: None) -> None:
    write_quality(tmp_path, ours=(0.96, 0.91), vpdq=None)
    write_scale(tmp_path, 10_000, without=0.9, with_=0.9)  # fewer distractors than the target asks
    write_ingest(tmp_path, ours_s="1.5", vpdq_s="-")
    write_search(tmp_path, search_run(10_000, 90.0))
    rows = target_rows(build_page(tmp_path, tmp_path / "RESULTS.md"))
    assert list(rows.values()) == [MET, MET, NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN]
    assert "skipped: vpdq not installed" in build_page(tmp_path, tmp_path / "RESULTS.md")


def test_links_are_relative_to_the_page(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS_DIR, results)
    page = build_page(results, tmp_path / "RESULTS.md")
    assert "](results/quality_per_kind.png)" in page
    assert refresh(results) == results / "RESULTS.md"  # only the project's own folder writes bench/RESULTS.md


def index_scale_run(videos: int, p95: float) -> dict:
    return {
        "videos": videos,
        "video_minutes": videos / 12,
        "index": "ivfpq",
        "ivf_cells": 513,
        "nprobe": 32,
        "build": {"build_s": 900.0},
        "candidates_p50_ms": p95 / 2,
        "candidates_p95_ms": p95,
        "candidate_recall": 0.1,
        "best_candidate_recall": 0.6,
        "bytes_per_video_minute": {"index_file": 4500.0, "index_resident": 5500.0},
        "load_avg": 2.0,
        "date": "2026-01-04 10:00",
    }


def test_the_index_alone_shows_its_latest_run_of_each_size(tmp_path: Path, shipped_training_free: None) -> None:
    write_search(tmp_path, search_run(100_000, 149.0))
    runs = [index_scale_run(1_000_000, 30.0), index_scale_run(100_000, 5.0), index_scale_run(1_000_000, 40.0)]
    (tmp_path / "index_scale.jsonl").write_text("".join(json.dumps(run) + "\n" for run in runs))
    page = build_page(tmp_path, tmp_path / "RESULTS.md")
    rows = [line for line in page.splitlines() if "(513 cells, nprobe 32)" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| 100,000", "| 1,000,000"]
    assert "| 20 | 40 |" in rows[1]  # the later run of 1M replaces the earlier one
    (tmp_path / "index_scale.jsonl").write_text("{not json\n")
    assert "Unreadable: `index_scale.jsonl`" in build_page(tmp_path, tmp_path / "RESULTS.md")
