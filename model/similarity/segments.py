"""Matched time ranges from a frame-to-frame similarity matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Largest step in target frames between two consecutive matched query frames that still
# continues one segment; allows speed changes up to 3x and one dropped frame.
MAX_TARGET_STEP = 3


# F value (on the cosine scale, see `cosine_scaled`) a matched frame pair must reach; the one
# threshold of every caller (search, `hapvr compare`). Shipped training-free model on the real
# test clips: frames of edited copies average 0.43 (blur) to 0.86 (subclip) against their
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


def matched_segments(
    frame_sim: np.ndarray,
    query_times: np.ndarray,
    target_times: np.ndarray,
    threshold: float,
    min_frames: int = 1,
) -> list[Segment]:
    """Runs of query frames whose best target frames move forward together, above `threshold`.

    frame_sim [Tq, Tt]; times in seconds per row / column. Each query frame is matched to its
    best target frame; consecutive matched query frames whose targets advance by 0 to
    MAX_TARGET_STEP frames form one segment. Ends are extended by one frame interval so a
    single matched frame covers the second it stands for. Sorted by score, best first.
    """
    if frame_sim.ndim != 2 or frame_sim.shape != (len(query_times), len(target_times)):
        raise ValueError(f"frame_sim {frame_sim.shape} does not match {len(query_times)}x{len(target_times)} times")
    if frame_sim.size == 0:
        return []
    best_target = frame_sim.argmax(axis=1)
    best_value = frame_sim[np.arange(frame_sim.shape[0]), best_target]
    query_step = _frame_interval(query_times)
    target_step = _frame_interval(target_times)

    segments: list[Segment] = []
    run: list[int] = []

    def close_run() -> None:
        if len(run) >= min_frames:
            first, last = run[0], run[-1]
            segments.append(
                Segment(
                    query_start=float(query_times[first]),
                    query_end=float(query_times[last] + query_step),
                    target_start=float(target_times[best_target[first]]),
                    target_end=float(target_times[best_target[last]] + target_step),
                    score=float(best_value[run].mean()),
                )
            )
        run.clear()

    for row in range(frame_sim.shape[0]):
        if best_value[row] < threshold:
            close_run()
            continue
        if run:
            step = int(best_target[row]) - int(best_target[run[-1]])
            if row - run[-1] > 1 or not 0 <= step <= MAX_TARGET_STEP:
                close_run()
        run.append(row)
    close_run()
    return sorted(segments, key=lambda segment: segment.score, reverse=True)


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


def _frame_interval(times: np.ndarray) -> float:
    if len(times) < 2:
        return 1.0
    return float(np.median(np.diff(times)))
