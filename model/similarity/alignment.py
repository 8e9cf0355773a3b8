"""Copied segments of a video pair by local alignment on its frame-to-frame matrix, and the pair's score.

A copied stretch shows up in the symmetric frame similarity F [Tq, Tt] (cosine scale, see
`segments.cosine_scaled`) as a path of high cells that moves forward in both videos. Each
cell gets a gain, (F - threshold) / (full - threshold) capped at 1, scaled by the pair's
informativeness weights where positive, so black, single-colour and static frames gain
nothing (model.similarity.informativeness). A Smith-Waterman style dynamic programme finds
the best-gaining forward path; its moves step 1 to 3 frames in each video, so speed changes
up to 3x (slopes 1/3 to 3) and short gaps (dropped or garbled frames) stay inside one path,
and every step beyond the plain diagonal costs `step_cost`. The best path is kept; its rows
and columns are closed and the programme runs again, up to `max_segments` times; paths that
follow each other within `merge_gap` seconds in both videos become one.

Score, before calibration: strength x coverage, where strength is the weighted mean match
(gain clipped to 0-1) along the paths and coverage the larger of the two videos' weighted
fractions of frames inside a path: a video wholly contained in the other (an excerpt, a
splice, a copy with an inserted intro) has coverage 1. The gain threshold is low (weak but
consistent evidence along a path is what separates harshly edited copies from unrelated
footage); the reported ranges are stricter: a path's range runs from its first to its last
frame pair with F >= segment_threshold and both frames informative, and a path without one
reports no range. F is made symmetric by the caller and the moves are symmetric, so swapping
the videos swaps the ranges and keeps the score; ranges end at the videos' durations.

Contrast, a second measurement beside the score (`frame_contrast`): how sharply each
frame's best match in the other video stands out from its typical match. A copy's frames
each have one sharp counterpart; other stretches of the same fixed camera or talking head
match every frame about equally, so they align as well as a copy but have little contrast
(bench/calibrate.py measures what it adds).

The programme runs row by row over a batch of pairs at once (numpy over pairs x columns),
so a search aligns all of its re-ranked candidates together.
"""

from __future__ import annotations

import dataclasses
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

    # F (cosine) where a cell's gain turns positive, and where it reaches 1. Low on purpose:
    # weak but consistent evidence along a path separates harsh copies from unrelated footage
    # (bench/calibrate.py: µAP rises as the threshold falls to 0 on the training side).
    threshold: float = 0.0
    full: float = 0.4
    # F a frame pair must reach, both frames informative, to be inside a reported range: a
    # path's range runs from its first such pair to its last.
    segment_threshold: float = SEGMENT_THRESHOLD
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
    contrast: float = 0.0  # `frame_contrast` of the pair's F

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
            self.contrast,
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
        dataclasses.replace(
            _summarise(pair_paths, np.asarray(sim, dtype=np.float32), match[b], query, target, config),
            contrast=frame_contrast(sim, query.weights, target.weights),
        )
        for b, (pair_paths, sim, target) in enumerate(zip(paths, frame_sims, targets))
    ]


def frame_contrast(
    frame_sim: np.ndarray, row_weights: np.ndarray | None = None, col_weights: np.ndarray | None = None
) -> float:
    """How sharply each frame's best match in the other video stands out, 0 to 1, both videos averaged.

    Per frame, 1 - (1 - best) / (1 - median) over its row of F (cosine scale): the share of the
    gap between its typical match and a perfect one that its best match closes. A frame with a
    perfect counterpart scores 1 (a video against itself does, static or not); one that matches
    everything equally well scores 0. Frames count by their informativeness weights, so a
    shared black fade or title card, matched perfectly, does not make a pair look like a copy.
    Symmetric: F and its transpose (weights swapped) give the same value.
    """
    sim = np.clip(np.asarray(frame_sim, dtype=np.float32), -1.0, 1.0)
    rows = np.ones(sim.shape[0]) if row_weights is None else np.asarray(row_weights, dtype=np.float64)
    cols = np.ones(sim.shape[1]) if col_weights is None else np.asarray(col_weights, dtype=np.float64)
    sides = []
    for matrix, weights in ((sim, rows), (sim.T, cols)):
        gap = np.maximum(1.0 - np.median(matrix, axis=1), 1e-3)
        sharp = np.clip(1.0 - (1.0 - matrix.max(axis=1)) / gap, 0.0, 1.0)
        sides.append(_weighted_mean(sharp, weights))
    return (sides[0] + sides[1]) / 2


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
    paths: list[list[tuple[int, int]]],
    sim: np.ndarray,
    match: np.ndarray,
    query: Side,
    target: Side,
    config: AlignmentConfig,
) -> PairAlignment:
    if not paths:
        return PairAlignment([], 0.0, 0.0, 0.0)
    spans = sorted(
        ((np.array([i for i, _ in path]), np.array([j for _, j in path])) for path in paths),
        key=lambda span: int(span[0][0]),
    )
    spans = _merge(spans, query.times, target.times, config.merge_gap)
    covered_q, covered_t = np.zeros(len(query.times), bool), np.zeros(len(target.times), bool)
    segments = []
    for rows, cols in spans:
        covered_q[rows[0] : rows[-1] + 1] = True
        covered_t[cols[0] : cols[-1] + 1] = True
        segment = _matched_range(rows, cols, sim, query, target, config)
        if segment is not None:
            segments.append(segment)
    rows = np.concatenate([r for r, _ in spans])
    cols = np.concatenate([c for _, c in spans])
    return PairAlignment(
        sorted(segments, key=lambda s: (-s.score, s.query_start)),
        _weighted_mean(match[rows, cols], np.minimum(query.weights[rows], target.weights[cols])),
        _coverage(covered_q, query.weights),
        _coverage(covered_t, target.weights),
    )


def _matched_range(
    rows: np.ndarray, cols: np.ndarray, sim: np.ndarray, query: Side, target: Side, config: AlignmentConfig
) -> Segment | None:
    """The stretch of a path between its first and last truly matched frame pair (F at least
    segment_threshold, both frames informative), in seconds, or None when it has none."""
    values = sim[rows, cols]
    informative = np.minimum(query.weights[rows], target.weights[cols]) >= 0.5
    matched = np.nonzero((values >= config.segment_threshold) & informative)[0]
    if len(matched) == 0:
        return None
    first, last = int(matched[0]), int(matched[-1])
    return Segment(
        query_start=float(query.times[rows[first]]),
        query_end=min(float(query.times[rows[last]]) + frame_interval(query.times), query.end()),
        target_start=float(target.times[cols[first]]),
        target_end=min(float(target.times[cols[last]]) + frame_interval(target.times), target.end()),
        score=float(np.clip(values[first : last + 1].mean(), 0.0, 1.0)),
    )


def _merge(
    spans: list[tuple[np.ndarray, np.ndarray]], query_times: np.ndarray, target_times: np.ndarray, gap: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Join paths that follow each other within `gap` seconds in both videos (sorted by query start)."""
    merged: list[tuple[np.ndarray, np.ndarray]] = []
    for rows, cols in spans:
        if merged:
            last_rows, last_cols = merged[-1]
            q_gap = query_times[rows[0]] - query_times[last_rows[-1]]
            t_gap = target_times[cols[0]] - target_times[last_cols[-1]]
            if 0 < q_gap <= gap + 1e-9 and 0 < t_gap <= gap + 1e-9:
                merged[-1] = (np.concatenate([last_rows, rows]), np.concatenate([last_cols, cols]))
                continue
        merged.append((rows, cols))
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
