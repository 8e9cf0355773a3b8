"""Matched time ranges and the cosine scale of the frame-to-frame similarity matrix they are read from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# F value (on the cosine scale, see `cosine_scaled`) a matched frame pair must reach; the
# alignment's default (model.similarity.alignment). Shipped training-free model on the real test clips: frames of edited copies average 0.43 (blur) to 0.86 (subclip) against their
# source, the best cell of any unrelated pair is 0.33.
SEGMENT_THRESHOLD = 0.35


@dataclass(frozen=True)
class Segment:
    query_start: float
    query_end: float
    target_start: float
    target_end: float
    score: float

    def to_dict(self) -> dict[str, float]:
        return {
            "query_start": round(self.query_start, 3),
            "query_end": round(self.query_end, 3),
            "target_start": round(self.target_start, 3),
            "target_end": round(self.target_end, 3),
            "score": round(self.score, 4),
        }


def cosine_scaled(frame_sim: np.ndarray, query_energy: np.ndarray, target_energy: np.ndarray) -> np.ndarray:
    """F [Tq, Tt] divided by sqrt(e_i * e_j), with `frame_energy` of the query's and the target's frames.

    Attention shrinks region vectors and F with them (a trained network's F sits near half of the
    training-free one), while the segment threshold is set on the cosine scale. Without attention
    every energy is 1 and F comes back as it was.
    """
    return frame_sim / np.sqrt(np.maximum(np.outer(query_energy, target_energy), 1e-12))


def frame_energy(regions: np.ndarray) -> np.ndarray:
    """Mean squared norm of each frame's indexed region vectors: [T, R, D] -> [T].

    torch reduces float16 straight into float32, ten times faster than numpy's convert-then-sum;
    this runs for every hit of every search.
    """
    flat = torch.from_numpy(np.ascontiguousarray(regions)).reshape(len(regions), -1)
    norms = torch.linalg.vector_norm(flat, dim=1, dtype=torch.float32)
    return (norms.square() / regions.shape[1]).numpy()
