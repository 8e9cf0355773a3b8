"""The inner window of picture-in-picture and boxed copies, found on real encoded edits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.edits import edit_params
from model.inner_window import find_window
from model.video import decode_video

SHORT_SIDE = 144  # the test clips' own size


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    across = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    down = max(0, min(ay + ah, by + bh) - max(ay, by))
    overlap = across * down
    return overlap / (aw * ah + bw * bh - overlap)


def _found(path: Path) -> tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int]]:
    frames = decode_video(path, fps=2.0, short_side=SHORT_SIDE).frames
    window = find_window(frames)
    params = edit_params(path)
    # The edit's box is in the pixels of the canvas it drew, which the decoder may have resized.
    scale = frames.shape[2] / params.get("canvas", [frames.shape[2]])[0]
    x, y, w, h = (round(value * scale) for value in params["box"])
    return (window.box() if window else None), (x, y, w, h)


@pytest.mark.parametrize("kind", ["pip", "letterbox"])
def test_window_of_real_edited_copies(kind: str, source_clips: list[Path], edited_copy: Callable[..., Path]) -> None:
    overlaps = []
    for clip in source_clips:
        found, truth = _found(edited_copy(kind, clip))
        overlaps.append(_iou(found, truth) if found else 0.0)
    # The pasted picture is found on most clips (a clip whose inner picture barely moves leaves
    # too little evidence); bars on every one.
    wanted = 0.7 if kind == "pip" else 1.0
    assert np.mean([overlap >= 0.7 for overlap in overlaps]) >= wanted, overlaps


def test_no_window_in_unedited_footage(source_clips: list[Path]) -> None:
    found = {clip.name: find_window(decode_video(clip, fps=2.0, short_side=SHORT_SIDE).frames) for clip in source_clips}
    assert sum(window is not None for window in found.values()) <= 1, found


def test_synthetic_window_is_exact() -> None:
    # Smooth moving patterns: a background panning one way, a smaller picture the other way.
    t = np.arange(12)[:, None, None]
    ys, xs = np.mgrid[0:90, 0:160]
    background = 128 + 100 * np.sin((xs[None] + 7 * t) / 9.0) * np.cos(ys[None] / 13.0)
    inner = 128 + 100 * np.cos((ys[None, :40, :60] - 5 * t) / 6.0)
    grey = background.copy()
    grey[:, 20:60, 70:130] = inner
    frames = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=3)
    window = find_window(frames)
    assert window is not None and window.box() == (70, 20, 60, 40)
    assert window.crop(frames).shape == (12, 40, 60, 3)


def test_too_few_frames_or_flat_frames_give_none() -> None:
    assert find_window(np.zeros((2, 64, 64, 3), np.uint8)) is None
    assert find_window(np.full((10, 64, 64, 3), 128, np.uint8)) is None
