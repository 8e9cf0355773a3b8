"""Matched time ranges read off a frame-to-frame similarity matrix."""

from __future__ import annotations

import numpy as np
import pytest

from model.similarity.segments import cosine_scaled, frame_energy, matched_segments


def test_diagonal_run_becomes_one_segment_with_both_time_ranges() -> None:
    frame_sim = np.full((10, 20), 0.1)
    for i in range(2, 8):  # query seconds 2..7 copy target seconds 12..17
        frame_sim[i, i + 10] = 0.9
    times_q, times_t = np.arange(10.0), np.arange(20.0)
    segments = matched_segments(frame_sim, times_q, times_t, threshold=0.5)
    assert len(segments) == 1
    segment = segments[0]
    assert (segment.query_start, segment.query_end) == (2.0, 8.0)
    assert (segment.target_start, segment.target_end) == (12.0, 18.0)
    assert segment.score == pytest.approx(0.9)


def test_jump_backwards_splits_segments_and_weak_rows_are_dropped() -> None:
    frame_sim = np.zeros((6, 10))
    for i, j in [(0, 5), (1, 6), (2, 7), (3, 1), (4, 2)]:
        frame_sim[i, j] = 0.8
    segments = matched_segments(frame_sim, np.arange(6.0), np.arange(10.0), threshold=0.5)
    ranges = sorted((s.query_start, s.query_end, s.target_start, s.target_end) for s in segments)
    assert ranges == [(0.0, 3.0, 5.0, 8.0), (3.0, 5.0, 1.0, 3.0)]


def test_nothing_above_threshold_gives_no_segment() -> None:
    assert matched_segments(np.full((4, 4), 0.2), np.arange(4.0), np.arange(4.0), threshold=0.5) == []


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        matched_segments(np.zeros((3, 4)), np.arange(3.0), np.arange(5.0), threshold=0.5)


def test_cosine_scaled_undoes_attention_shrinking_and_keeps_unit_features() -> None:
    rng = np.random.default_rng(0)
    query = rng.normal(size=(5, 9, 16)).astype(np.float32)
    target = rng.normal(size=(7, 9, 16)).astype(np.float32)
    query /= np.linalg.norm(query, axis=-1, keepdims=True)
    target /= np.linalg.norm(target, axis=-1, keepdims=True)
    cosine = np.einsum("iod,jpd->iojp", query, target).max(axis=3).mean(axis=1)
    assert np.allclose(cosine_scaled(cosine, frame_energy(query), frame_energy(target)), cosine, atol=1e-6)
    # Attention weighs all regions of a frame alike here: 0.6 in the query, 0.4 to 0.9 in the target.
    weights = np.linspace(0.4, 0.9, 7, dtype=np.float32)[:, None, None]
    shrunk_query, shrunk_target = 0.6 * query, weights * target
    shrunk = np.einsum("iod,jpd->iojp", shrunk_query, shrunk_target).max(axis=3).mean(axis=1)
    assert shrunk.max() < 0.6 * cosine.max() + 1e-6
    assert np.allclose(
        cosine_scaled(shrunk, frame_energy(shrunk_query), frame_energy(shrunk_target)), cosine, atol=1e-5
    )
