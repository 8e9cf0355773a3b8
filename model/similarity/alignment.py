"""Copied segments of a video pair by local alignment on its frame-to-frame matrix, and the pair's score.

A copied stretch shows up in the symmetric frame similarity F [Tq, Tt] (cosine scale, see
`segments.cosine_scaled`) as a path of high cells that moves forward in both videos. Each
cell gets a gain: (F - threshold) / (full - threshold), positive for a matched frame pair
(up to 1), negative otherwise, and scaled by the pair's informativeness weights so black,
single-colour and static frames gain nothing (`informativeness`). A Smith-Waterman style
dynamic programme finds the best-gaining forward path; its moves step 1 to 3 frames in each
video, so speed changes up to 3x (slopes 1/3 to 3) and short gaps (dropped or garbled frames)
stay inside one path, and every step beyond the plain diagonal costs `step_cost`. The best
path is a segment; its rows and columns are then closed and the programme runs again, up to
`max_segments` times, so each genuinely shared stretch gives exactly one range.

The programme runs row by row over a batch of pairs at once (numpy over pairs x columns),
so a search aligns all of its re-ranked candidates in a few milliseconds.

Pair score, before calibration: strength x coverage, where strength is the weighted mean
match (gain clipped to 0-1) along the segments' paths and coverage the larger of the two
videos' weighted fractions of frames inside a segment: a video wholly contained in the other
(an excerpt, a splice, a copy with an inserted intro) has coverage 1. F is made symmetric by
the caller and the moves are symmetric, so swapping the videos swaps the ranges and keeps the
score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.similarity.segments import SEGMENT_THRESHOLD, Segment

# (query step, target step, cost in gain units): the diagonal is free, a slope change or a
# skipped frame costs STEP_COST per extra frame stepped over.
_STEPS = ((1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1), (2, 3), (3, 2), (3, 3))
MAX_STEP = 3


@dataclass(frozen=True)
class AlignmentConfig:
    """Knobs of the alignment (bench/quality.py measures them; chosen on the training side)."""

    threshold: float = SEGMENT_THRESHOLD  # F (cosine) below which a frame pair is not a match
    full: float = 0.9  # F at or above which a frame pair is a full match (gain 1)
    step_cost: float = 0.1  # per frame stepped over beyond the diagonal
    min_gain: float = 0.6  # total path gain of a segment, about one well matched frame
    max_segments: int = 4
    merge_gap: float = 2.0  # seconds: consecutive segments this close in both videos become one


@dataclass(frozen=True)
class PairAlignment:
    """One pair's segments (times in seconds) and the numbers its score is made of."""

    segments: list[Segment]
    strength: float  # weighted mean match along the paths, 0-1
    query_coverage: float  # weighted fraction of the query's frames inside a segment
    target_coverage: float

    @property
    def coverage(self) -> float:
        return max(self.query_coverage, self.target_coverage)

    @property
    def score(self) -> float:
        """Uncalibrated 0-1: 1 for a video against itself, 0 when nothing is aligned."""
        return self.strength * self.coverage

    def swapped(self) -> PairAlignment:
        return PairAlignment(
            [Segment(s.target_start, s.target_end, s.query_start, s.query_end, s.score) for s in self.segments],
            self.strength,
            self.target_coverage,
            self.query_coverage,
        )


@dataclass(frozen=True)
class Side:
    """What the alignment needs of one video: frame times, informativeness weights, duration."""

    times: np.ndarray  # [T] seconds
    weights: np.ndarray  # [T] in [0, 1]
    duration: float | None = None

    def end(self) -> float:
        """Where the video ends: its duration when known, else one frame interval past the last frame."""
        step = frame_interval(self.times)
        last = float(self.times[-1]) + step
        return last if self.duration is None else float(self.duration)


def align_pairs(
    frame_sims: Sequence[np.ndarray], query: Side, targets: Sequence[Side], config: AlignmentConfig
) -> list[PairAlignment]:
    """Align one query with several targets; frame_sims[i] is the symmetric cosine F [Tq, Tt_i]."""
    if not frame_sims:
        return []
    tq = len(query.times)
    widths = [sim.shape[1] for sim in frame_sims]
    if any(sim.shape[0] != tq for sim in frame_sims) or any(w != len(t.times) for w, t in zip(widths, targets)):
        raise ValueError("each frame_sim must be [query frames, target frames]")
    width = max(widths)
    match = np.zeros((len(frame_sims), tq, width), dtype=np.float32)
    gain = np.full((len(frame_sims), tq, width), -1.0, dtype=np.float32)
    span = max(config.full - config.threshold, 1e-6)
    for b, (sim, target) in enumerate(zip(frame_sims, targets)):
        raw = (np.asarray(sim, dtype=np.float32) - config.threshold) / span
        pair_weight = np.minimum(query.weights[:, None], target.weights[None, :]).astype(np.float32)
        clipped = np.clip(raw, 0.0, 1.0)
        match[b, :, : sim.shape[1]] = clipped
        gain[b, :, : sim.shape[1]] = np.where(raw > 0, np.minimum(raw, 1.0) * pair_weight, np.maximum(raw, -1.0))
    paths: list[list[list[tuple[int, int]]]] = [[] for _ in frame_sims]
    active = np.arange(len(frame_sims))
    for _ in range(config.max_segments):
        if len(active) == 0:
            break
        found = _best_paths(gain[active], config)
        still = []
        for b, path in zip(active.tolist(), found):
            if path is None:
                continue
            paths[b].append(path)
            rows = slice(path[0][0], path[-1][0] + 1)
            cols = slice(path[0][1], path[-1][1] + 1)
            gain[b, rows, :] = -1.0  # a frame belongs to one segment at most
            gain[b, :, cols] = -1.0
            still.append(b)
        active = np.array(still, dtype=np.int64)
    return [
        _summarise(pair_paths, match[b], query, target, config)
        for b, (pair_paths, target) in enumerate(zip(paths, targets))
    ]


def _best_paths(gain: np.ndarray, config: AlignmentConfig) -> list[list[tuple[int, int]] | None]:
    """Per pair, the forward path of largest total gain (local alignment), or None below min_gain."""
    batch, rows, cols = gain.shape
    pad = MAX_STEP
    score = np.zeros((batch, rows + pad, cols + pad), dtype=np.float32)  # padded: a path may start anywhere
    move = np.zeros((batch, rows, cols), dtype=np.int8)  # index into _STEPS + 1; 0 = path starts here
    costs = np.array([config.step_cost * (di + dj - 2) for di, dj in _STEPS], dtype=np.float32).reshape(-1, 1, 1)
    for i in range(rows):
        previous = (
            np.stack([score[:, pad + i - di, pad - dj : pad - dj + cols] for di, dj in _STEPS]) - costs
        )  # [steps, batch, cols]
        best = previous.argmax(axis=0)
        carried = np.take_along_axis(previous, best[None], axis=0)[0]
        fresh = carried <= 0
        total = np.where(fresh, 0.0, carried) + gain[:, i]
        score[:, pad + i, pad:] = np.maximum(total, 0.0)
        move[:, i] = np.where(fresh, 0, best + 1)
    found: list[list[tuple[int, int]] | None] = []
    body = score[:, pad:, pad:]
    for b in range(batch):
        end = int(body[b].argmax())
        i, j = divmod(end, cols)
        if body[b, i, j] < config.min_gain:
            found.append(None)
            continue
        path = [(i, j)]
        while move[b, i, j] > 0:
            di, dj = _STEPS[move[b, i, j] - 1]
            i, j = i - di, j - dj
            if body[b, i, j] <= 0:
                break
            path.append((i, j))
        found.append(path[::-1])
    return found


def _summarise(
    paths: list[list[tuple[int, int]]], match: np.ndarray, query: Side, target: Side, config: AlignmentConfig
) -> PairAlignment:
    if not paths:
        return PairAlignment([], 0.0, 0.0, 0.0)
    q_end, t_end = query.end(), target.end()
    q_step, t_step = frame_interval(query.times), frame_interval(target.times)
    spans = []
    for path in paths:
        rows = np.array([i for i, _ in path])
        cols = np.array([j for _, j in path])
        weight = np.minimum(query.weights[rows], target.weights[cols])
        spans.append((path[0][0], path[-1][0], path[0][1], path[-1][1], match[rows, cols], weight))
    spans = _merge(sorted(spans), query.times, target.times, config.merge_gap)
    segments, covered_q, covered_t = [], np.zeros(len(query.times), bool), np.zeros(len(target.times), bool)
    matches, weights = [], []
    for r0, r1, c0, c1, values, weight in spans:
        covered_q[r0 : r1 + 1] = True
        covered_t[c0 : c1 + 1] = True
        matches.append(values)
        weights.append(weight)
        segments.append(
            Segment(
                query_start=float(query.times[r0]),
                query_end=min(float(query.times[r1]) + q_step, q_end),
                target_start=float(target.times[c0]),
                target_end=min(float(target.times[c1]) + t_step, t_end),
                score=_weighted_mean(values, weight),
            )
        )
    strength = _weighted_mean(np.concatenate(matches), np.concatenate(weights))
    return PairAlignment(
        sorted(segments, key=lambda s: (-s.score, s.query_start)),
        strength,
        _coverage(covered_q, query.weights),
        _coverage(covered_t, target.weights),
    )


def _merge(spans: list, query_times: np.ndarray, target_times: np.ndarray, gap: float) -> list:
    """Join segments that follow each other within `gap` seconds in both videos (sorted by query start)."""
    merged: list = []
    for span in spans:
        if merged:
            r0, r1, c0, c1, values, weight = merged[-1]
            q_gap = query_times[span[0]] - query_times[r1]
            t_gap = target_times[span[2]] - target_times[c1]
            if 0 < q_gap <= gap + 1e-9 and 0 < t_gap <= gap + 1e-9:
                merged[-1] = (
                    r0,
                    span[1],
                    c0,
                    span[3],
                    np.concatenate([values, span[4]]),
                    np.concatenate([weight, span[5]]),
                )
                continue
        merged.append(span)
    return merged


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    total = float(weights.sum())
    if total <= 1e-6:
        return 0.0
    return float((values * weights).sum() / total)


def _coverage(covered: np.ndarray, weights: np.ndarray) -> float:
    total = float(weights.sum())
    if total <= 1e-6:
        return 0.0
    return float(weights[covered].sum() / total)


def frame_interval(times: np.ndarray) -> float:
    if len(times) < 2:
        return 1.0
    return float(np.median(np.diff(times)))
