"""Copied segments by alignment on synthetic frame matrices: one range per stretch, symmetric, bounded."""

from __future__ import annotations

import numpy as np
import pytest

from model.similarity.alignment import AlignmentConfig, Side, align_pairs, frame_contrast
from model.similarity.calibration import Calibration, shipped_calibration

CONFIG = AlignmentConfig()


def side(frames: int, duration: float | None = None, weights: np.ndarray | None = None) -> Side:
    return Side(np.arange(frames, dtype=np.float64), np.ones(frames) if weights is None else weights, duration)


def align(sim: np.ndarray, query: Side, target: Side):  # type: ignore[no-untyped-def]
    (result,) = align_pairs([sim], query, [target], CONFIG)
    return result


def test_an_excerpt_gives_one_range_at_its_place_and_full_coverage_of_the_excerpt() -> None:
    sim = np.full((10, 60), 0.1)
    for i in range(10):  # the query is seconds 30..39 of the target
        sim[i, 30 + i] = 0.95
    result = align(sim, side(10, 10.0), side(60, 60.0))
    assert [(s.query_start, s.query_end, s.target_start, s.target_end) for s in result.segments] == [
        (0.0, 10.0, 30.0, 40.0)
    ]
    assert result.query_coverage == 1.0 and result.target_coverage == pytest.approx(10 / 60)
    assert result.score == pytest.approx(1.0)


def test_swapping_the_videos_swaps_the_ranges_and_keeps_the_score() -> None:
    rng = np.random.default_rng(0)
    sim = rng.uniform(0.0, 0.3, size=(12, 20))
    for i in range(2, 10):
        sim[i, i + 5] = rng.uniform(0.6, 0.95)
    forward = align(sim, side(12), side(20))
    backward = align(sim.T.copy(), side(20), side(12))
    assert backward.score == pytest.approx(forward.score, abs=1e-6)
    assert backward.segments == forward.swapped().segments


def test_a_speed_change_is_one_range_with_slope_two() -> None:
    sim = np.full((8, 20), 0.1)
    for i in range(8):  # the query plays the target at double speed
        sim[i, 2 * i + 2] = 0.9
    result = align(sim, side(8), side(20))
    assert len(result.segments) == 1
    segment = result.segments[0]
    assert (segment.query_start, segment.query_end) == (0.0, 8.0)
    assert (segment.target_start, segment.target_end) == (2.0, 17.0)


def test_a_short_gap_is_bridged_and_separate_stretches_stay_separate() -> None:
    sim = np.full((30, 30), 0.1)
    for i in list(range(0, 6)) + list(range(8, 14)):  # one stretch with a 2-frame dropout
        sim[i, i] = 0.9
    for i in range(20, 26):  # another stretch, reordered into the target's start
        sim[i, i - 20] = 0.9
    result = align(sim, side(30), side(30))
    ranges = sorted((s.query_start, s.query_end, s.target_start, s.target_end) for s in result.segments)
    assert ranges[0] == (0.0, 14.0, 0.0, 14.0)
    assert len(ranges) == 1 or ranges[1][0] == 20.0


def test_ranges_never_run_past_either_duration() -> None:
    sim = np.full((5, 5), 0.95)
    result = align(sim, side(5, duration=4.3), side(5, duration=4.6))
    for segment in result.segments:
        assert segment.query_end <= 4.3 and segment.target_end <= 4.6


def test_unrelated_frames_give_no_range_and_a_low_score() -> None:
    rng = np.random.default_rng(1)
    unrelated = align(rng.uniform(0.0, 0.33, size=(10, 12)), side(10), side(12))
    assert unrelated.segments == []  # no frame pair reaches the segment threshold
    copy = align(np.where(np.eye(10, 12) > 0, 0.6, rng.uniform(0.0, 0.33, size=(10, 12))), side(10), side(12))
    assert copy.segments and copy.score == 1.0 and unrelated.score < 0.7
    strict = AlignmentConfig(threshold=0.35, full=0.9)  # a gain only from frames that match well
    assert align_pairs([rng.uniform(0.0, 0.33, size=(10, 12))], side(10), [side(12)], strict)[0].score == 0.0


def test_low_information_frames_cannot_make_a_match_alone() -> None:
    sim = np.full((10, 10), 0.1)
    sim[4:8, 2:6] = 1.0  # four identical held frames (a black fade, a title card) in both videos
    static = np.ones(10)
    static[4:8] = 0.05
    weights = side(10, weights=static), side(10, weights=np.roll(static, -2))
    assert align(sim, *weights).segments == []  # held frames never make a range
    strict = AlignmentConfig(threshold=0.35, full=0.9)
    assert align_pairs([sim], weights[0], [weights[1]], strict)[0].score == 0.0  # nor a gain


def test_shipped_calibration_rises_with_both_measurements_and_spans_0_to_1() -> None:
    calibration = shipped_calibration()
    steps = np.linspace(-1, 1, 11)
    grid = np.array([[[calibration(a, raw, c) for c in steps[5:]] for raw in steps] for a in steps[5:]])
    assert (
        np.all(np.diff(grid, axis=0) >= 0) and np.all(np.diff(grid, axis=1) >= 0) and np.all(np.diff(grid, axis=2) >= 0)
    )
    # A video against itself: everything aligned, every frame's best match perfect (contrast 1),
    # even where the network scores it as low as on the worst real self pair (bench/calibrate.py).
    assert calibration(1.0, 0.3, 1.0) >= 0.99
    assert calibration(0.0, -0.5, 0.0) <= 0.05  # unrelated: nothing aligned, a low network score
    assert calibration.tier(1.0, 1.0) == "duplicate"
    assert calibration.tier(1.0, 0.3) == "partial"
    assert calibration.tier(0.0, 0.0) == "none"
    with pytest.raises(ValueError):
        Calibration(alignment_weight=1.0, raw_weight=1.0, bias=0.0, partial=0.2, related=0.4, duplicate_coverage=0.8)
    with pytest.raises(ValueError):
        Calibration(alignment_weight=-1.0, raw_weight=1.0, bias=0.0, partial=0.5, related=0.4, duplicate_coverage=0.8)


def test_frame_contrast_tells_a_sharp_counterpart_from_a_uniformly_similar_scene() -> None:
    rng = np.random.default_rng(4)
    frames = rng.normal(size=(12, 16))
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    own = frames @ frames.T
    assert frame_contrast(own) == pytest.approx(1.0)  # a video against itself
    assert frame_contrast(np.full((6, 6), 0.99)) == pytest.approx(0.0, abs=1e-6)  # all alike, none perfect
    assert frame_contrast(np.full((6, 6), 1.0)) == pytest.approx(1.0)  # a still video against itself
    other = 0.6 + 0.05 * rng.uniform(size=(12, 12))  # every frame matched about equally, none perfectly
    assert frame_contrast(other) < 0.3
    weights_a, weights_b = rng.uniform(0.05, 1, 12), rng.uniform(0.05, 1, 9)
    matrix = rng.uniform(-0.2, 1, (12, 9))
    assert frame_contrast(matrix, weights_a, weights_b) == pytest.approx(frame_contrast(matrix.T, weights_b, weights_a))
    # Frames of weight near zero (black, title cards) cannot lift it.
    shared_card = np.full((6, 6), 0.2)
    shared_card[0, 0] = 1.0
    low = np.array([0.0, 1, 1, 1, 1, 1])
    assert (
        frame_contrast(shared_card, low, low) < frame_contrast(shared_card)
        and frame_contrast(shared_card, low, low) < 0.05
    )
