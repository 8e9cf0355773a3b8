"""The inner window's crop embedded from the same decode as the video (model.embedding)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.edits import edit_params
from model.checkpoint import load_default
from model.embedding import VideoEmbedder


@pytest.fixture(scope="module")
def embedder() -> VideoEmbedder:
    return VideoEmbedder(load_default(), fps=1.0)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    overlap = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return overlap / (aw * ah + bw * bh - overlap)


def test_picture_in_picture_copy_gets_its_window(
    embedder: VideoEmbedder, source_clips: list[Path], edited_copy: Callable[..., Path]
) -> None:
    copy = edited_copy("pip", source_clips[0])
    result = embedder.embed_detailed(copy, with_window=True)
    assert result.window is not None and result.window_box is not None
    # The edit's box is in the copy's own pixels; the decoder scaled them to a 256 px short side.
    x, y, w, h = edit_params(copy)["box"]
    scale = 256 / 144
    truth = (round(x * scale), round(y * scale), round(w * scale), round(h * scale))
    assert _iou(result.window_box, truth) >= 0.7, (result.window_box, truth)
    # Same frames, same times; the video's own features are those of a plain embed.
    np.testing.assert_array_equal(result.window.timestamps, result.features.timestamps)
    assert result.window.duration == result.features.duration
    np.testing.assert_allclose(result.features.regions, embedder.embed(copy).regions, atol=1e-3)
    assert result.timings.window > 0
    # The crop is another picture than the whole frame.
    cosines = np.einsum("td,td->t", result.window.frame_vectors, result.features.frame_vectors)
    assert cosines.mean() < 0.95


def test_unedited_footage_gets_no_window(embedder: VideoEmbedder, source_clips: list[Path]) -> None:
    features, window = embedder.embed_versions(source_clips[0])
    assert window is None and features.num_frames > 0
