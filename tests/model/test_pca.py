"""PCA whitening: decorrelation, dimensions, streaming fits, small data, checkpoint tensors,
and fitting from real video files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from model.encoders.pca import CovarianceAccumulator, PCAWhitening


def _correlated(samples: int, channels: int, seed: int = 0, offset: float = 0.0) -> torch.Tensor:
    """Gaussian vectors with very unequal variances along random (non-axis) directions."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(1, -1, channels, dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
    latent = torch.randn(samples, channels, generator=generator, dtype=torch.float64) * scales
    return latent @ basis.T + offset + torch.randn(channels, generator=generator, dtype=torch.float64)


def test_whitening_decorrelates_to_identity():
    data = _correlated(20_000, 48)
    pca = PCAWhitening.fit(data, dim=20)
    assert pca.in_dim == 48 and pca.dim == 20
    assert pca.mean.shape == (48,) and pca.projection.shape == (48, 20)
    whitened = pca.whiten(data.float()).double()
    covariance = torch.cov(whitened.T)
    assert torch.allclose(covariance, torch.eye(20, dtype=torch.float64), atol=1e-3)
    assert whitened.mean(dim=0).abs().max() < 1e-3


def test_keeps_the_largest_variance_directions():
    data = _correlated(20_000, 32, seed=1)
    pca = PCAWhitening.fit(data, dim=8)
    # Directions kept are the top eigenvectors of the covariance.
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(data.T))
    top = eigenvectors[:, -8:]
    directions = pca.projection.double() / pca.projection.double().norm(dim=0)
    captured = (top.T @ directions).pow(2).sum(dim=0)  # 1 when inside the top subspace
    assert torch.allclose(captured, torch.ones(8, dtype=torch.float64), atol=1e-4)
    # Scales are 1 / sqrt(eigenvalue + eps), largest eigenvalue first.
    norms = pca.projection.double().norm(dim=0)
    expected = 1 / torch.sqrt(eigenvalues.flip(0)[:8] + 1e-5)
    assert torch.allclose(norms, expected, rtol=1e-3)


def test_forward_is_l2_normalised_and_keeps_leading_shape():
    data = _correlated(2_000, 24)
    pca = PCAWhitening.fit(data, dim=12)
    x = data[:54].float().reshape(2, 3, 9, 24)
    y = pca(x)
    assert y.shape == (2, 3, 9, 12)
    assert torch.allclose(y.norm(dim=-1), torch.ones(2, 3, 9), atol=1e-5)
    assert torch.allclose(y, torch.nn.functional.normalize(pca.whiten(x), dim=-1))
    with pytest.raises(ValueError, match="width 24"):
        pca(torch.zeros(3, 10))


def test_streamed_fit_equals_one_shot_and_is_deterministic():
    data = _correlated(3_000, 16, offset=50.0)
    one_shot = PCAWhitening.fit(data, dim=10)
    accumulator = CovarianceAccumulator(16)
    for chunk in data.split(700):
        accumulator.update(chunk)
    streamed = accumulator.fit(dim=10)
    assert torch.allclose(streamed.mean, one_shot.mean, atol=1e-4)
    assert torch.allclose(streamed.projection, one_shot.projection, rtol=1e-4, atol=1e-4)
    # Row order does not change the fit, eigenvector signs included.
    shuffled = PCAWhitening.fit(data[torch.randperm(len(data), generator=torch.Generator().manual_seed(3))], dim=10)
    assert torch.allclose(shuffled.projection, one_shot.projection, rtol=1e-4, atol=1e-4)
    # A large common offset does not spoil the covariance.
    assert torch.allclose(accumulator.covariance(), torch.cov(data.T), atol=1e-8)


def test_small_data_caps_dim_and_too_little_is_an_error(caplog):
    data = _correlated(10, 32)
    with caplog.at_level(logging.WARNING, logger="model.encoders.pca"):
        pca = PCAWhitening.fit(data, dim=16)
    assert pca.dim == 9  # 10 centred vectors span 9 directions
    assert "capped" in caplog.text
    assert torch.isfinite(pca(data.float())).all()
    with pytest.raises(ValueError, match="at least 2"):
        PCAWhitening.fit(data[:1], dim=4)
    with pytest.raises(ValueError, match="at least 2"):
        CovarianceAccumulator(32).fit()


def test_fewer_vectors_than_dimensions_keeps_the_directions_they_vary_along(caplog):
    # 27 vectors of width 1752 (three frames of 9 regions, as a tiny fit-pca run gives).
    data = _correlated(27, 1752, seed=4)
    with caplog.at_level(logging.WARNING, logger="model.encoders.pca"):
        pca = PCAWhitening.fit(data, dim=512)
    assert (pca.in_dim, pca.dim) == (1752, 26)
    assert "capped" in caplog.text
    whitened = pca.whiten(data.float()).double()
    assert torch.isfinite(whitened).all()
    # The kept directions are whitened: unit variance, uncorrelated.
    assert torch.allclose(torch.cov(whitened.T), torch.eye(26, dtype=torch.float64), atol=1e-3)
    # Repeated vectors add no direction: 10 distinct ones, each three times, span 9.
    repeated = PCAWhitening.fit(_correlated(10, 64, seed=5).repeat(3, 1), dim=32)
    assert repeated.dim == 9 and torch.isfinite(repeated.projection).all()


def test_a_fit_that_cannot_succeed_is_one_clear_error():
    with pytest.raises(ValueError, match="at least 2 sample vectors, got 0"):
        PCAWhitening.fit(torch.zeros(0, 16), dim=4)
    same = torch.full((50, 16), 0.25, dtype=torch.float64) + torch.linspace(0, 1, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="identical") as caught:
        PCAWhitening.fit(same, dim=4)
    assert "\n" not in str(caught.value)
    broken = _correlated(50, 16)
    broken[3, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        PCAWhitening.fit(broken, dim=4)
    with pytest.raises(ValueError, match="dim must be positive"):
        PCAWhitening.fit(_correlated(50, 16), dim=0)


def test_fit_falls_back_when_the_eigen_solver_does_not_converge(monkeypatch, caplog):
    data = _correlated(400, 24, seed=6)
    expected = PCAWhitening.fit(data, dim=10)

    def fails(_matrix):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", fails)
    with caplog.at_level(logging.WARNING, logger="model.encoders.pca"):
        fallback = PCAWhitening.fit(data, dim=10)
    assert "failed to converge" in caplog.text
    assert torch.allclose(fallback.projection, expected.projection, rtol=1e-4, atol=1e-4)

    def numpy_fails(_matrix):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    monkeypatch.setattr(np.linalg, "eigh", numpy_fails)
    svd = PCAWhitening.fit(data, dim=10)  # the last resort: an SVD of the covariance
    assert torch.allclose(svd.projection, expected.projection, rtol=1e-4, atol=1e-4)


def test_fit_on_a_handful_of_frames(tmp_path):
    from model.encoders.frame_encoder import FrameEncoder
    from model.encoders.pca import fit_on_frames

    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 256, size=(3, 4, 4, 3)).astype(np.uint8)
    frames = coarse.repeat(32, axis=1).repeat(32, axis=2)  # three 128 px frames
    encoder = FrameEncoder(runtime="torch", crop=96)
    pca = fit_on_frames([frames[:2], frames[2:]], encoder, dim=512)
    assert pca.in_dim == 1752 and 1 <= pca.dim <= 3 * 9 - 1
    assert torch.isfinite(pca(torch.from_numpy(encoder.raw_regions(frames)))).all()
    # The same frame three times: nothing to whiten.
    with pytest.raises(ValueError, match="identical"):
        fit_on_frames([np.repeat(frames[:1], 3, axis=0)], encoder, dim=8)


def test_state_tensors_round_trip():
    pca = PCAWhitening.fit(_correlated(500, 12), dim=6)
    tensors = pca.state_tensors()
    assert set(tensors) == {"pca.mean", "pca.projection"}
    restored = PCAWhitening.from_state_tensors(tensors)
    x = torch.randn(4, 12)
    assert torch.equal(restored(x), pca(x))
    with pytest.raises(ValueError, match="pca.projection"):
        PCAWhitening.from_state_tensors({"pca.mean": tensors["pca.mean"]})


def _write_video(path: Path, frames: int, seed: int) -> None:
    av = pytest.importorskip("av")
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 320, 256, "yuv420p"
        for _ in range(frames):
            coarse = rng.integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
            picture = coarse.repeat(32, axis=0).repeat(32, axis=1)[:256, :320]
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_fit_pca_from_videos_and_command(tmp_path):
    from model.commands.fit_pca import even_sample, fit_pca_from_videos
    from model.encoders.frame_encoder import FrameEncoder
    from model.video import find_videos

    folder = tmp_path / "videos"
    (folder / "nested").mkdir(parents=True)
    _write_video(folder / "a.mp4", frames=8, seed=0)  # 4 s at 2 fps
    _write_video(folder / "nested" / "b.mp4", frames=6, seed=1)
    (folder / "broken.mp4").write_bytes(b"not a video")
    (folder / "notes.txt").write_text("ignored")
    paths = find_videos(folder)
    assert [p.name for p in paths] == ["a.mp4", "broken.mp4", "b.mp4"]

    seen = []
    encoder = FrameEncoder(runtime="torch", crop=96)
    pca = fit_pca_from_videos(
        paths, encoder, dim=512, fps=2.0, on_video=lambda p, n, e: seen.append((p.name, n, e is None))
    )
    assert seen == [("a.mp4", 8, True), ("broken.mp4", 0, False), ("b.mp4", 6, True)]
    assert pca.in_dim == 1752 and pca.dim == 14 * 9 - 1  # capped by the 126 region vectors

    capped = fit_pca_from_videos(paths, encoder, dim=8, max_frames=4, fps=2.0)
    assert capped.dim == 8
    assert even_sample(8, 2) == [0, 7] and even_sample(3, None) == [0, 1, 2]
    with pytest.raises(ValueError, match="at least one decodable video"):
        fit_pca_from_videos([folder / "broken.mp4"], encoder, dim=8)


def test_fit_pca_command_writes_a_loadable_checkpoint(tmp_path, capsys, monkeypatch):
    import argparse

    monkeypatch.setenv("HAPVR_CACHE_DIR", str(tmp_path / "cache"))  # the ONNX export goes here
    from model.checkpoint import load_checkpoint
    from model.commands import fit_pca

    parser = argparse.ArgumentParser(prog="hapvr")
    fit_pca.register(parser.add_subparsers(dest="command", required=True))
    folder = tmp_path / "videos"
    folder.mkdir()
    _write_video(folder / "a.mp4", frames=10, seed=2)
    out = tmp_path / "model.safetensors"

    args = parser.parse_args(["fit-pca", str(folder), "--out", str(out), "--dim", "16", "--fps", "2"])
    assert args.func(args) == 0
    bundle = load_checkpoint(out)
    assert bundle.backbone == "efficientnet_lite0" and bundle.mode == "training-free"
    assert tuple(bundle.pca.projection.shape) == (1752, 16)
    assert bundle.similarity.config.dim == 16 and not bundle.similarity.config.comparator
    assert bundle.provenance["pca"]["frames"] == 10
    assert list((tmp_path / "cache").glob("*.onnx"))

    empty = tmp_path / "empty"
    empty.mkdir()
    args = parser.parse_args(["fit-pca", str(empty), "--out", str(tmp_path / "x.safetensors")])
    assert args.func(args) == 2
    assert "no video files" in capsys.readouterr().err
