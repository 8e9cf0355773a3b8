"""The calibration fit and its cross-fitting by recording group, on synthetic pair measurements."""

from __future__ import annotations

import numpy as np

from bench.calibrate import SELF_FLOOR, SELF_SCORE, calibrated_matrix, cross_fitted, fit_pairs


def synthetic_benchmark(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """8 recordings, each with 2 clips of 3 videos (a clip and its copies). The other clip of the
    same recording is a negative that aligns like a copy but has little contrast, as another
    stretch of a fixed camera does. Returns measurements [Q, N, 3], labels, keep, groups, queries."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"rec{i}" for i in range(8)], 6)
    clips = np.repeat(np.arange(16), 3)  # 3 videos per clip, 2 clips per recording
    count = len(groups)
    labels = clips[:, None] == clips[None, :]
    same_recording = (groups[:, None] == groups[None, :]) & ~labels
    alignment = np.where(
        labels | same_recording, rng.uniform(0.7, 1, (count, count)), rng.uniform(0, 0.4, (count, count))
    )
    raw = np.where(labels, rng.uniform(-0.3, 0.6, (count, count)), rng.uniform(-0.9, 0.0, (count, count)))
    contrast = np.where(labels, rng.uniform(0.4, 1, (count, count)), rng.uniform(0, 0.5, (count, count)))
    measurements = np.stack([alignment, raw, contrast], axis=-1)
    measurements[np.arange(count), np.arange(count)] = (1.0, 0.6, 1.0)
    keep = ~np.eye(count, dtype=bool)
    return measurements, labels, keep, groups, np.arange(count)


def test_the_fit_keeps_every_self_pair_and_the_floor_above_the_self_score() -> None:
    measurements, labels, keep, _, queries = synthetic_benchmark()
    selves = measurements[queries, queries]
    fit = fit_pairs(measurements, labels, keep, selves)
    assert np.all(fit.weights[:3] >= 0)
    assert calibrated_matrix(selves, fit.weights).min() >= SELF_SCORE - 1e-6
    assert calibrated_matrix(np.array(SELF_FLOOR), fit.weights) >= SELF_SCORE - 1e-6
    assert 0 <= fit.related <= fit.partial <= SELF_SCORE
    # Contrast is what tells the fixed-camera stretches from copies here, so the fit uses it.
    assert fit.weights[2] > 0
    scores = calibrated_matrix(measurements, fit.weights)
    copies = scores[keep] >= fit.partial
    assert labels[keep][copies].mean() >= 0.9


def test_cross_fitting_judges_each_recording_without_it() -> None:
    measurements, labels, keep, groups, queries = synthetic_benchmark(1)
    figures = cross_fitted(measurements, labels, keep, groups, queries)
    tiers = figures["copy_tiers_leave_one_recording_out"]
    assert tiers["groups"] == 8 and 0.8 <= tiers["precision"] <= 1 and 0 < tiers["recall"] <= 1
    ranking = figures["ranking_on_unseen_recording_halves"]
    assert 0.5 < ranking["micro_ap"] <= 1 and 0.5 < ranking["map"] <= 1
    # Without the contrast the fixed-camera stretches cannot be told apart: the ranking drops.
    blind = measurements.copy()
    blind[..., 2] = 0.5
    blind[queries, queries, 2] = 1.0
    assert (
        cross_fitted(blind, labels, keep, groups, queries)["ranking_on_unseen_recording_halves"]["micro_ap"]
        < (ranking["micro_ap"])
    )
