"""What the indexer keeps per video: region features for the exact re-rank, one vector per frame for FAISS.

Region features are stored in float16 (ARCHITECTURE section 11: they dominate storage, 9 KB a
frame instead of 18 KB); frame vectors stay float32 because they are small (2 KB a frame) and
the vector index must be rebuilt from the store to exactly what it held before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.similarity.segments import frame_energy
from model.workspace import convert_into


@dataclass
class VideoFeatures:
    """One video after the encoder and the similarity network's `index()` step.

    regions: float16 [T, R, D] (float32 with float32_regions, as the feature store decodes its
    4-bit codes), frame_vectors: float32 [T, D] (L2-normalised), timestamps:
    float64 [T] seconds of each sampled frame. frame_weights: float32 [T] informativeness of each
    frame (model.similarity.informativeness), computed from the regions when not given, so
    features stored before it existed keep working. duration / fps / source_fps describe the decode
    (seconds of the source, sampling rate used, the source's own frame rate when known);
    frames_expected and warnings what it lost (model.video.DecodedVideo); checkpoint the
    fingerprint of the model that made the features (model.checkpoint.fingerprint).
    Arrays are converted to those dtypes on construction so every consumer can rely on them.
    """

    regions: np.ndarray
    frame_vectors: np.ndarray
    timestamps: np.ndarray
    duration: float | None = None
    fps: float | None = None
    source_fps: float | None = None
    frames_expected: int | None = None
    warnings: tuple[str, ...] = ()
    checkpoint: str | None = None
    float32_regions: bool = False  # regions kept in float32 (decoded from the feature store's codes)
    frame_weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        # The feature store decodes its 4-bit codes to exact float32 levels; rounding them to float16
        # would cost 4x the decode (1.3 ms a candidate), so those stay float32.
        regions_dtype = np.float32 if self.float32_regions else np.float16
        self.regions = np.ascontiguousarray(self.regions, dtype=regions_dtype)
        self.frame_vectors = np.ascontiguousarray(self.frame_vectors, dtype=np.float32)
        self.timestamps = np.ascontiguousarray(self.timestamps, dtype=np.float64)
        if self.regions.ndim != 3:
            raise ValueError(f"regions must be [T, R, D], got shape {self.regions.shape}")
        frames, _, dim = self.regions.shape
        if frames == 0:
            raise ValueError("a video needs at least one frame")
        if self.frame_vectors.shape != (frames, dim):
            raise ValueError(
                f"frame_vectors must be [{frames}, {dim}] to match regions, got {self.frame_vectors.shape}"
            )
        if self.timestamps.shape != (frames,):
            raise ValueError(f"timestamps must be [{frames}], got {self.timestamps.shape}")
        if self.frame_weights is not None:
            self.frame_weights = np.ascontiguousarray(self.frame_weights, dtype=np.float32)
            if self.frame_weights.shape != (frames,):
                raise ValueError(f"frame_weights must be [{frames}], got {self.frame_weights.shape}")

    @property
    def weights(self) -> np.ndarray:
        """Per-frame informativeness, computed once from the regions when not stored."""
        if self.frame_weights is None:
            from model.similarity.informativeness import frame_weights

            self.frame_weights = frame_weights(self.regions)
        return self.frame_weights

    def regions_into(self, destination: torch.Tensor, rows: list[int]) -> None:
        """Write the regions of frames `rows` into `destination` (the re-rank's workspace), in its dtype."""
        source = torch.from_numpy(self.regions)
        if len(rows) != len(source):
            source = source[rows]
        convert_into(destination, source)

    def frame_energy(self) -> np.ndarray:
        """Mean squared norm of each frame's regions, float32 [T] (what the alignment scales F by)."""
        return frame_energy(self.regions)

    def check_finite(self) -> None:
        """Raise ValueError on NaN or infinite values. Checked once on the way in, not on every read:
        in float16 it costs about 7 us a frame, 45 ms over the candidates of one search."""
        if not (np.isfinite(self.regions).all() and np.isfinite(self.frame_vectors).all()):
            raise ValueError("features contain NaN or infinite values")

    @property
    def num_frames(self) -> int:
        return int(self.regions.shape[0])

    @property
    def num_regions(self) -> int:
        return int(self.regions.shape[1])

    @property
    def dim(self) -> int:
        return int(self.regions.shape[2])

    @property
    def nbytes(self) -> int:
        return self.regions.nbytes + self.frame_vectors.nbytes + self.timestamps.nbytes


def mean_frame_vectors(regions: np.ndarray) -> np.ndarray:
    """[T, R, D] -> float32 [T, D]: L2-normalised mean of a frame's regions (the FAISS vector).

    The same rule as model.similarity's `frame_vectors`; kept here in numpy for synthetic
    features in tests and benchmarks, where no network is involved.
    """
    means = np.asarray(regions, dtype=np.float32).mean(axis=1)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.maximum(norms, 1e-12)).astype(np.float32)
