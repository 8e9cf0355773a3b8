"""The frame descriptor's training: copy edits, the head, its loss, and `hapvr train-descriptor` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.cli import main as cli
from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from model.encoders.pca import PCAWhitening
from model.train.copy_edits import EDITS, SHORT_SIDE, copy_view
from model.train.descriptor import DescriptorConfig, ProjectionHead, chamfer_matrix, descriptor_loss


def picture(seed: int, height: int = 144, width: int = 256) -> np.ndarray:
    """A smooth random picture (blocks of colour, enlarged), uint8 [H, W, 3]."""
    coarse = torch.rand(1, 3, 6, 10, generator=torch.Generator().manual_seed(seed))
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    return (smooth.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("name", sorted(EDITS))
def test_every_edit_changes_the_frame_and_keeps_it_a_picture(name: str) -> None:
    frame = torch.from_numpy(picture(0)).permute(2, 0, 1).float() / 255
    other = torch.from_numpy(picture(1, 120, 160)).permute(2, 0, 1).float() / 255
    edited = EDITS[name](frame, np.random.default_rng(3), other)
    assert edited.shape[0] == 3 and min(edited.shape[1:]) >= 8
    assert float(edited.min()) >= 0.0 and float(edited.max()) <= 1.0
    same_shape = edited.shape == frame.shape
    assert not (same_shape and torch.allclose(edited, frame, atol=1 / 255)), f"{name} left the frame as it was"


def test_copy_views_are_seeded_at_the_decoders_short_side_and_flip_when_asked() -> None:
    frame, other = picture(0), picture(1)
    first, names = copy_view(frame, other, np.random.default_rng(7), flip_p=1.0)
    again, same_names = copy_view(frame, other, np.random.default_rng(7), flip_p=1.0)
    assert first.dtype == np.uint8 and min(first.shape[:2]) == SHORT_SIDE and first.shape[2] == 3
    assert np.array_equal(first, again) and names == same_names
    assert names[0] == "flip" and 2 <= len(names) <= 4
    assert not any(copy_view(frame, other, np.random.default_rng(s), flip_p=0.0)[1][0] == "flip" for s in range(20))


def test_head_starts_as_the_pca_and_exports_exactly_what_it_computes() -> None:
    generator = torch.Generator().manual_seed(0)
    pca = PCAWhitening(torch.randn(40, generator=generator), torch.randn(40, 16, generator=generator))
    head = ProjectionHead(16)
    regions = torch.randn(5, 9, 40, generator=generator)
    assert torch.allclose(head.export(pca)(regions), pca(regions), atol=1e-6)
    with torch.no_grad():
        head.correction.normal_(0, 0.2, generator=generator)
    exported = head.export(pca)
    assert exported.projection.shape == pca.projection.shape
    assert torch.allclose(exported(regions), head(pca.whiten(regions)), atol=1e-5)
    assert not torch.allclose(exported(regions), pca(regions), atol=1e-3)


def test_loss_rewards_matching_views_and_ignores_near_frames_of_the_same_video() -> None:
    config = DescriptorConfig(koleo=0.0, near_seconds=2.0)
    frames = F.normalize(torch.randn(6, 9, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    matched = torch.stack([frames, frames], dim=1)  # the second view is the first
    shuffled = torch.stack([frames, frames.roll(1, dims=0)], dim=1)
    video, when = torch.arange(6), torch.zeros(6)
    good, parts = descriptor_loss(matched, video, when, config)
    bad, _ = descriptor_loss(shuffled, video, when, config)
    assert parts["acc"] == 1.0 and float(good) < float(bad)
    # Frames 0 and 1 made identical: as far-apart frames of one video they are hard negatives ...
    twins = matched.clone()
    twins[1] = twins[0]
    far, _ = descriptor_loss(twins, torch.zeros(6, dtype=torch.long), torch.arange(6.0) * 10, config)
    # ... but a second apart they are the same picture, left out of each other's negatives.
    near, _ = descriptor_loss(twins, torch.zeros(6, dtype=torch.long), torch.arange(6.0), config)
    assert float(near) < float(far) - 0.1
    assert torch.allclose(chamfer_matrix(frames, frames).diagonal(), torch.ones(6))


def test_train_descriptor_writes_a_checkpoint_that_loads_with_portable_provenance(
    source_clips: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "videos"
    data.mkdir()
    for clip in source_clips[:4]:
        (data / clip.name).symlink_to(clip)
    out = tmp_path / "run"
    flags = ["--max-frames-per-video", "3", "--views", "3", "--steps", "4", "--batch-size", "6", "--eval-every", "2"]
    assert cli(["train-descriptor", str(data), "--out", str(out), "--val-block-seconds", "1", *flags]) == 0
    shipped, trained = load_checkpoint(DEFAULT_CHECKPOINT), load_checkpoint(out / "descriptor.safetensors")
    assert trained.pca.projection.shape == shipped.pca.projection.shape
    assert trained.similarity.config == shipped.similarity.config and trained.mode == shipped.mode
    for name, value in shipped.similarity.state_dict().items():
        assert torch.equal(value, trained.similarity.state_dict()[name]), name
    descriptor = trained.provenance["descriptor"]
    assert descriptor["data"]["videos"] == sorted(clip.name for clip in source_clips[:4])
    assert descriptor["data"]["frames"] == 12 and descriptor["config"]["views"] == 3
    assert descriptor["data"]["train_frames"] + descriptor["data"]["val_frames"] == 12
    assert str(tmp_path) not in json.dumps(trained.provenance), "an absolute path of the training machine"
    history = json.loads((out / "history.json").read_text())
    assert [int(record["step"]) for record in history] == [0, 2, 4]
    assert "descriptor from step" in capsys.readouterr().out
    # A rerun reuses the encoded views; bad settings are one-line errors with exit code 2.
    assert cli(["train-descriptor", str(data), "--out", str(out), "--val-block-seconds", "1", *flags]) == 0
    assert "views of 12 frames from" in capsys.readouterr().err
    assert cli(["train-descriptor", str(data), "--out", str(out), "--views", "1"]) == 2
    assert "views must be at least 2" in capsys.readouterr().err


@pytest.mark.slow
def test_a_longer_run_learns_the_copies_of_real_footage(source_clips: list[Path], tmp_path: Path) -> None:
    data = tmp_path / "videos"
    data.mkdir()
    for clip in source_clips:
        (data / clip.name).symlink_to(clip)
    out = tmp_path / "run"
    flags = ["--max-frames-per-video", "8", "--views", "4", "--steps", "120", "--batch-size", "32"]
    assert cli(["train-descriptor", str(data), "--out", str(out), "--val-block-seconds", "1", *flags]) == 0
    history = json.loads((out / "history.json").read_text())
    first, last = history[1], history[-1]
    assert last["loss"] < first["loss"] and last["acc"] > first["acc"]
    assert max(record["val_MRR"] for record in history[1:]) >= history[0]["val_MRR"] - 0.02
