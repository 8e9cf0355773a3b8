"""Inner windows followed through a decode batch by batch (model.window_track), on synthetic
frames whose windows come and go at known frames."""

from __future__ import annotations

import numpy as np
import torch

from model.inner_window import Window, border_strength
from model.window_track import WindowTrack

HEIGHT, WIDTH, BATCH = 128, 224, 32


def _smooth(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """Frames of smooth random content, different in every frame (as moving footage averages)."""
    coarse = torch.from_numpy(rng.random((count, 3, 5, 8), dtype=np.float32) * 255)
    fine = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
    return fine.permute(0, 2, 3, 1).round().to(torch.uint8).numpy()


def _video(rng: np.random.Generator, count: int, boxes: list[tuple[int, int, Window]]) -> np.ndarray:
    """`count` frames; box (first, end, window): other footage pasted in window over frames [first, end)."""
    frames = _smooth(rng, count, HEIGHT, WIDTH)
    for first, end, box in boxes:
        inner = _smooth(rng, end - first, box.bottom - box.top, box.right - box.left)
        frames[first:end, box.top : box.bottom, box.left : box.right] = inner
    return frames


def _feed(frames: np.ndarray) -> tuple[WindowTrack, np.ndarray, list[np.ndarray]]:
    track = WindowTrack()
    crops = [crop for start in range(0, len(frames), BATCH) for crop in track.feed(frames[start : start + BATCH])]
    crops += track.finish()
    rows = np.concatenate([crop.rows for crop in crops]) if crops else np.zeros(0, np.int64)
    return track, rows, [crop.frames for crop in crops]


FIRST = Window(top=20, bottom=80, left=30, right=130, contrast=0.0, sides=4)
SECOND = Window(top=50, bottom=110, left=110, right=200, contrast=0.0, sides=4)


def test_windows_that_come_and_go_after_the_first_batch_crop_where_they_show() -> None:
    frames = _video(np.random.default_rng(0), 141, [(40, 80, FIRST), (100, 141, SECOND)])
    track, rows, crops = _feed(frames)
    assert [w.box() for w in track.windows] == [FIRST.box(), SECOND.box()]
    # The first window starts at its first frame (found in the batch of frames 32-63, it is
    # checked back into the frames before) and ends at its last one (found missing for END_RUN
    # frames in the next batch), and the second starts at its first frame again.
    assert rows[rows < 100].tolist() == list(range(40, 80))
    assert rows[rows >= 100].tolist() == list(range(100, 141))
    assert (np.diff(rows) > 0).all()  # each frame once, in time order
    assert crops[0].shape[1:3] == (60, 100)
    np.testing.assert_array_equal(crops[0][0], FIRST.crop(frames[40:41])[0])


def test_window_from_the_first_frame_is_cropped_throughout() -> None:
    frames = _video(np.random.default_rng(1), 70, [(0, 70, FIRST)])
    _, rows, _ = _feed(frames)
    assert rows.tolist() == list(range(70))


def test_footage_without_a_window_crops_nothing() -> None:
    track, rows, _ = _feed(_video(np.random.default_rng(2), 100, []))
    assert track.windows == [] and len(rows) == 0


def test_border_strength_tells_frames_with_the_border_from_frames_without() -> None:
    frames = _video(np.random.default_rng(3), 20, [(0, 10, FIRST)])
    strength = border_strength(frames, FIRST)
    assert (strength[:10] > 3).all() and (strength[10:] < 1.5).all(), strength


def test_window_found_in_a_later_batch_starts_back_in_the_batch_before() -> None:
    # Coding noise on every frame, so one frame of 32 with the border does not make a window.
    frames = _video(np.random.default_rng(4), 90, [(31, 90, SECOND)])
    noise = np.random.default_rng(5).normal(0, 6, frames.shape)
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    assert WindowTrack().feed(frames[:BATCH]) == []
    track, rows, _ = _feed(frames)
    assert len(track.windows) == 1 and rows.tolist() == list(range(31, 90))


def test_a_window_ends_after_end_run_frames_without_it_and_shorter_gaps_are_bridged() -> None:
    # Gone for the last 5 frames (fewer than END_RUN): the video ends inside a gap, which is kept.
    _, rows, _ = _feed(_video(np.random.default_rng(6), 70, [(0, 65, FIRST)]))
    assert rows.tolist() == list(range(70))
    # Gone for the last 10: the window ends at its last frame.
    _, rows, _ = _feed(_video(np.random.default_rng(7), 70, [(0, 60, FIRST)]))
    assert rows.tolist() == list(range(60))
    # A 5-frame gap in the middle (a dark scene inside the window) is bridged.
    _, rows, _ = _feed(_video(np.random.default_rng(8), 70, [(0, 30, FIRST), (35, 70, FIRST)]))
    assert rows.tolist() == list(range(70))
