"""Frames -> region features: center crop, backbone stages, 3x3 regional pooling, PCA.

One graph (`EncoderGraph`: uint8 frames -> L2-normalised region vectors) runs either in
eager PyTorch or, exported to ONNX, under onnxruntime; both give the same features (to
about 1e-5). PCA whitening runs after it in PyTorch, so one cached export serves every
checkpoint that shares the backbone weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.encoders.onnx_runtime import OnnxRunner, cached_onnx_model, onnxruntime_available
from model.encoders.pca import PCAWhitening
from model.encoders.pooling import regional_pool
from model.encoders.registry import DEFAULT_BACKBONE, BackboneSpec, create_backbone, get_spec

RUNTIMES = ("auto", "torch", "onnxruntime")
GRID = 3
REGIONS = GRID * GRID


class EncoderGraph(nn.Module):
    """uint8 RGB frames [N, S, S, 3] -> L2-normalised region vectors [N, 9, C].

    Normalisation and the NHWC -> NCHW move are inside the graph, so callers hand over
    cropped frames as they are; the permuted tensor is channels-last in memory, which is
    the layout the CPU convolution kernels prefer.
    """

    pixel_mean: torch.Tensor  # buffers, registered in __init__
    pixel_scale: torch.Tensor

    def __init__(self, backbone: nn.Module, spec: BackboneSpec, grid: int = GRID) -> None:
        super().__init__()
        self.backbone = backbone
        self.grid = grid
        self.register_buffer("pixel_mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_scale", 1.0 / torch.tensor(spec.std).view(1, 3, 1, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float()
        x = (x - self.pixel_mean) * self.pixel_scale
        return regional_pool(self.backbone(x), self.grid)


def center_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 [N, crop, crop, 3], contiguous.

    Frames whose short side is below `crop` are first scaled up (bilinear) so it equals
    `crop`; larger frames are cropped as they are (decode_video gives short side 256).
    """
    height, width = frames.shape[1:3]
    if min(height, width) < crop:
        scale = crop / min(height, width)
        size = (max(crop, round(height * scale)), max(crop, round(width * scale)))
        tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=False)
        frames = tensor.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        height, width = size
    top, left = (height - crop) // 2, (width - crop) // 2
    return np.ascontiguousarray(frames[:, top : top + crop, left : left + crop])


class FrameEncoder:
    """Batched frame encoder for CPU (or whatever device torch runs on).

    runtime: "torch" (eager, inference mode, channels-last), "onnxruntime" (export cached
    under `cache_dir`, see model.encoders.onnx_runtime), or "auto" (onnxruntime when it is
    installed: about 5x faster on a 2-core CPU). `threads` sets torch's and onnxruntime's
    intra-op threads (torch's is process-wide); None keeps their defaults.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        pca: PCAWhitening | None = None,
        weights: str | Path | None = None,
        runtime: str = "auto",
        batch_size: int = 32,
        crop: int = 224,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.spec = get_spec(backbone)
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if runtime == "onnxruntime" and not onnxruntime_available():
            raise ValueError("runtime 'onnxruntime' asked for but onnxruntime is not installed")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if crop < 32:
            raise ValueError(f"crop must be at least 32 pixels, got {crop}")
        if pca is not None and pca.in_dim != self.spec.channels:
            raise ValueError(f"PCA expects {pca.in_dim}-d regions but {backbone} gives {self.spec.channels}-d")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        self.backbone = backbone
        self.batch_size = batch_size
        self.crop = crop
        self.threads = threads
        self.cache_dir = cache_dir
        self.runtime = ("onnxruntime" if onnxruntime_available() else "torch") if runtime == "auto" else runtime
        self.pca = pca.eval() if pca is not None else None
        graph = EncoderGraph(create_backbone(backbone, weights, image_size=crop, fuse_batch_norms=True), self.spec)
        # torch's Module.to overloads omit the documented memory_format keyword.
        self.graph = graph.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._onnx: OnnxRunner | None = None

    @property
    def channels(self) -> int:
        """Width of a region vector before PCA."""
        return self.spec.channels

    @property
    def dim(self) -> int:
        """Width of a region vector as `encode` returns it."""
        return self.pca.dim if self.pca is not None else self.spec.channels

    @property
    def regions(self) -> int:
        return REGIONS

    def raw_regions(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB -> float32 [N, 9, C] L2-normalised regions, before PCA."""
        frames = self._check_frames(frames)
        out = np.empty((len(frames), REGIONS, self.channels), dtype=np.float32)
        for start in range(0, len(frames), self.batch_size):
            batch = center_crop(frames[start : start + self.batch_size], self.crop)
            out[start : start + len(batch)] = self._run(batch)
        return out

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB -> float32 [N, 9, D] (D = PCA dim, else the raw width)."""
        regions = self.raw_regions(frames)
        if self.pca is None:
            return regions
        with torch.inference_mode():
            return self.pca(torch.from_numpy(regions)).numpy()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.runtime == "onnxruntime":
            if self._onnx is None:
                model = cached_onnx_model(self.graph, self.backbone, self.crop, self.cache_dir)
                self._onnx = OnnxRunner(model, self.threads)
            return self._onnx(batch)
        with torch.inference_mode():
            return self.graph(torch.from_numpy(batch)).numpy()

    @staticmethod
    def _check_frames(frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 RGB frames [N, H, W, 3], got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames, got {frames.dtype}")
        return frames
