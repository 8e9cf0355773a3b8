"""Synthetic video features with the structure real ones have, for tests and the scale benchmark.

Real footage is made of shots: frames inside a shot are close to each other, shots are far
apart, and the 9 regions of a frame differ. Random unit vectors per shot centre and region,
plus per-frame noise, reproduce that, so candidate generation and the re-rank face the same
kind of data (many near-identical frames within a video, unrelated videos near orthogonal).
"""

from __future__ import annotations

import numpy as np

from model.features import VideoFeatures, mean_frame_vectors


def random_unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random float32 vectors of unit length along the last axis."""
    vectors = rng.standard_normal(shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def synthetic_video(
    rng: np.random.Generator,
    frames: int,
    *,
    regions: int = 9,
    dim: int = 512,
    shot_frames: tuple[int, int] = (3, 12),
    frame_noise: float = 0.35,
    fps: float = 1.0,
) -> VideoFeatures:
    """A video of `frames` frames cut into shots of shot_frames[0]..shot_frames[1] frames."""
    region_vectors = np.empty((frames, regions, dim), dtype=np.float32)
    start = 0
    while start < frames:
        length = int(rng.integers(shot_frames[0], shot_frames[1] + 1))
        end = min(frames, start + length)
        centre = random_unit(rng, (1, regions, dim))
        noise = random_unit(rng, (end - start, regions, dim)) * frame_noise
        region_vectors[start:end] = _normalise(centre + noise)
        start = end
    timestamps = np.arange(frames, dtype=np.float64) / fps
    return VideoFeatures(
        regions=region_vectors,
        frame_vectors=mean_frame_vectors(region_vectors),
        timestamps=timestamps,
        duration=frames / fps,
        fps=fps,
    )


def edited_copy(
    rng: np.random.Generator,
    original: VideoFeatures,
    start: int = 0,
    length: int | None = None,
    noise: float = 0.5,
) -> VideoFeatures:
    """A re-encoded excerpt: frames [start, start + length) of `original` with feature noise added.

    noise 0.5 moves a region vector to a cosine of about 0.9 with its source, roughly what a
    re-encode with a logo or a mild crop does to real region features.
    """
    end = original.num_frames if length is None else min(original.num_frames, start + length)
    source = original.regions[start:end].astype(np.float32)
    regions = _normalise(source + random_unit(rng, source.shape) * noise)
    fps = original.fps or 1.0
    return VideoFeatures(
        regions=regions,
        frame_vectors=mean_frame_vectors(regions),
        timestamps=np.arange(end - start, dtype=np.float64) / fps,
        duration=(end - start) / fps,
        fps=fps,
    )
