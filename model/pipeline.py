"""A video file to indexed region features: decode, encode frames, apply the network's indexing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import ModelBundle
from model.video import DecodeLimits, decode_video


@dataclass
class EmbeddedVideo:
    regions: torch.Tensor  # indexed region features [T, R, D], float32
    timestamps: np.ndarray  # seconds of each sampled frame [T]
    duration: float
    source_fps: float | None


class VideoPipeline:
    """Holds the model and its encoder so many videos can be embedded with one warm-up."""

    def __init__(
        self,
        bundle: ModelBundle,
        fps: float = 1.0,
        limits: DecodeLimits | None = None,
        **encoder_options: object,
    ) -> None:
        self.bundle = bundle
        self.fps = fps
        self.limits = limits or DecodeLimits()
        self.encoder = bundle.frame_encoder(**encoder_options)

    def embed_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB frames [T, H, W, 3] -> indexed region features [T, R, D]."""
        regions = torch.from_numpy(self.encoder.encode(frames))
        with torch.inference_mode():
            return self.bundle.similarity.index(regions)

    def embed_file(self, path: str | Path) -> EmbeddedVideo:
        """Raises model.video.VideoDecodeError for anything that is not a usable video."""
        video = decode_video(path, fps=self.fps, limits=self.limits)
        return EmbeddedVideo(self.embed_frames(video.frames), video.timestamps, video.duration, video.source_fps)
