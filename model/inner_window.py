"""Find a picture inside the picture: the inner window of picture-in-picture and boxed footage.

A copy shown small over other footage keeps a fixed rectangle for the whole shot, while the
content on both sides of its border changes independently. Averaged over many frames, image
gradients across that border stay high along straight lines, whereas the edges of moving
content blur into a low, smooth field. So the border shows as four ridges in the time-averaged
gradient maps: two rows in the vertical-gradient map and two columns in the horizontal one,
each strong over the span between the other two. Letterbox and pillarbox bars give the same
signature and are found the same way (their inside is the content worth embedding).

Embedding the window's crop as another version of a video lets a clip shown small inside
other footage be compared with the original at full size. About 10 ms for 64 frames at 144 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

# A window smaller than this share of either side is too small to embed usefully; one larger
# than MAX_SIDE of both sides is the frame itself (a slight crop or border, which the frame
# encoder tolerates anyway).
MIN_SIDE = 0.2
MAX_SIDE = 0.92
# Each side's ridge must stand this many times above the frame's typical gradient. Natural
# shots average to ridges of 1.5-3.5; pasted windows give 4.5 and more on the real test clips.
MIN_CONTRAST = 4.0
# A pasted border runs the whole length of each side, an edge in the scene (a box on a table,
# a building in a fixed camera's view) only part of it: the weakest side's 20th percentile along
# its length must also stand this far above the typical gradient. On 1 fps samples of real
# footage, pictures pasted in score 3.1 and more, the edges of static scenes 2.3 at most.
MIN_EVENNESS = 2.5
EVENNESS_PERCENTILE = 20
# Bars are flat: their mean time-averaged gradient stays under this many grey levels (coding
# noise in black bars gives about 0.1; a textured band of a static scene several).
MAX_BAR_GRADIENT = 1.0
# Candidate lines per direction: the strongest local peaks of the line profiles.
PEAKS = 8
MIN_FRAMES = 3  # fewer frames cannot tell a fixed border from an edge in the picture


@dataclass(frozen=True)
class Window:
    """A rectangle in pixels of the frames it was found in: [top, bottom) x [left, right)."""

    top: int
    bottom: int
    left: int
    right: int
    contrast: float  # weakest side's ridge over the frame's typical gradient
    sides: int  # sides inside the frame (the others lie on its edge)

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """The window's pixels of frames [T, H, W, C] (a view)."""
        return frames[:, self.top : self.bottom, self.left : self.right]

    def box(self) -> tuple[int, int, int, int]:
        """(x, y, width, height)."""
        return self.left, self.top, self.right - self.left, self.bottom - self.top


@dataclass(frozen=True)
class GradientSums:
    """Per-pixel sums over `frames` frames of the absolute grey-level gradients (grey as the sum of
    the three channels): across rows [H-1, W] and across columns [H, W-1]. Sums of consecutive
    stretches of a video add up to the sums of the whole stretch, so a streamed decode computes
    each frame's once and searches any run of stretches (model.window_track)."""

    across_rows: np.ndarray
    across_cols: np.ndarray
    frames: int

    def __add__(self, other: GradientSums) -> GradientSums:
        return GradientSums(
            self.across_rows + other.across_rows, self.across_cols + other.across_cols, self.frames + other.frames
        )


def gradient_sums(frames: np.ndarray) -> GradientSums:
    """GradientSums of uint8 frames [T, H, W, 3].

    Grey as the int16 sum of the channels and sums in float32 (exact: they are integers) give the
    maps of a float32 mean to 1e-5 at a third of its time (10 ms instead of 28 for 32 frames at
    128 px), which every stretch of a video pays while no window shows.
    """
    grey = frames[..., 0].astype(np.int16)
    grey += frames[..., 1]
    grey += frames[..., 2]
    across_rows = np.abs(np.diff(grey, axis=1)).sum(axis=0, dtype=np.float32)
    across_cols = np.abs(np.diff(grey, axis=2)).sum(axis=0, dtype=np.float32)
    return GradientSums(across_rows, across_cols, len(frames))


def find_window(frames: np.ndarray, max_frames: int = 64) -> Window | None:
    """The inner window of frames [T, H, W, 3] uint8, or None when there is none."""
    if len(frames) < MIN_FRAMES:
        return None
    rows = np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(np.int64)
    return window_in(gradient_sums(frames[np.unique(rows)]))


def window_in(sums: GradientSums) -> Window | None:
    """The inner window the gradient sums of a stretch of frames show, or None when there is none."""
    if sums.frames < MIN_FRAMES:
        return None
    # Time-averaged gradients: across rows (a horizontal border) and across columns (a vertical one).
    scale = np.float32(1 / (3 * sums.frames))
    across_rows = sums.across_rows * scale  # [H-1, W]
    across_cols = sums.across_cols * scale  # [H, W-1]
    typical = float(np.median(np.concatenate([across_rows.ravel(), across_cols.ravel()]))) + 1.0
    height, width = across_cols.shape[0], across_rows.shape[1]
    # Prefix sums along each line, so the mean of any segment of a candidate line is O(1).
    row_sums = np.concatenate([np.zeros((across_rows.shape[0], 1)), np.cumsum(across_rows, axis=1)], axis=1)
    col_sums = np.concatenate([np.zeros((1, across_cols.shape[1])), np.cumsum(across_cols, axis=0)], axis=0)

    last_row, last_col = across_rows.shape[0] - 1, across_cols.shape[1] - 1
    found: list[Window] = []
    for top, bottom in _line_pairs(across_rows.mean(axis=1), height):
        for left, right in _line_pairs(across_cols.mean(axis=0), width):
            if bottom - top > MAX_SIDE * height and right - left > MAX_SIDE * width:
                continue  # the frame itself, or nearly
            # A side on the frame's own edge has no ridge to show (a window in a corner, or
            # letterbox content spanning the full width): only the inner sides are scored.
            ridges = [
                (row_sums[top, right] - row_sums[top, left]) / (right - left) if top > 0 else None,
                (row_sums[bottom, right] - row_sums[bottom, left]) / (right - left) if bottom < last_row else None,
                (col_sums[bottom, left] - col_sums[top, left]) / (bottom - top) if left > 0 else None,
                (col_sums[bottom, right] - col_sums[top, right]) / (bottom - top) if right < last_col else None,
            ]
            inner = [ridge for ridge in ridges if ridge is not None]
            # Four sides inside the frame (a picture over other footage), or two opposite sides
            # across the whole frame (letterbox or pillarbox bars). Three sides or a corner is
            # what a static scene's own edges (a desk, a window frame) most often make.
            bars = (ridges[0] is not None and ridges[1] is not None) != (
                ridges[2] is not None and ridges[3] is not None
            )
            if not (
                len(inner) == 4 or (len(inner) == 2 and bars and _flat_outside(across_rows, top, bottom, left, right))
            ):
                continue
            contrast = float(min(inner)) / typical
            if contrast >= MIN_CONTRAST:
                # A border between pixel rows r and r+1 is gradient row r: the window starts at r+1.
                window = Window(
                    top + 1 if top > 0 else 0,
                    bottom + 1 if bottom < last_row else height,
                    left + 1 if left > 0 else 0,
                    right + 1 if right < last_col else width,
                    contrast,
                    len(inner),
                )
                found.append(window)
    # More sides seen beats a higher contrast: bars are only taken when no window with all its
    # sides inside the frame stands out. The evenness check is costlier, so it runs in that order.
    for window in sorted(found, key=lambda w: (w.sides, w.contrast), reverse=True):
        if _evenness(across_rows, across_cols, window) >= MIN_EVENNESS * typical:
            return window
    return None


def _evenness(across_rows: np.ndarray, across_cols: np.ndarray, window: Window) -> float:
    """The weakest inner side's EVENNESS_PERCENTILE-th gradient along its length."""
    top, bottom, left, right = window.top, window.bottom, window.left, window.right
    sides = []
    if top > 0:
        sides.append(across_rows[top - 1, left:right])
    if bottom < across_rows.shape[0] + 1:
        sides.append(across_rows[bottom - 1, left:right])
    if left > 0:
        sides.append(across_cols[top:bottom, left - 1])
    if right < across_cols.shape[1] + 1:
        sides.append(across_cols[top:bottom, right - 1])
    return min(float(np.percentile(side, EVENNESS_PERCENTILE)) for side in sides)


def _flat_outside(gradient: np.ndarray, top: int, bottom: int, left: int, right: int) -> bool:
    """Whether the frame outside rows [top, bottom] and columns [left, right] is flat, as bars are."""
    outside = np.ones(gradient.shape, bool)
    outside[top : bottom + 1, left : right + 1] = False
    return bool(outside.any()) and float(gradient[outside].mean()) <= MAX_BAR_GRADIENT


def _line_pairs(profile: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Pairs (first, second) of candidate border lines, far enough apart for a window."""
    inner = profile[1:-1]
    peaks = np.flatnonzero((inner >= profile[:-2]) & (inner >= profile[2:])) + 1
    strongest = sorted(peaks[np.argsort(profile[peaks])[::-1][:PEAKS]].tolist())
    # The frame's own edges (an image border in a full-frame video) count as candidate lines too,
    # for windows touching one side of the frame.
    candidates = sorted({0, *strongest, len(profile) - 1})
    return [(a, b) for a, b in combinations(candidates, 2) if b - a >= MIN_SIDE * size]


def border_strength(frames: np.ndarray, window: Window) -> np.ndarray:
    """How plainly `window`'s border shows in each of frames [T, H, W, 3] uint8: float32 [T].

    Per inner side, the mean gradient across the side's line (the strongest of it and the lines
    one pixel either side: scaling spreads an edge over two rows) over the mean gradient across
    the lines BESIDE pixels inside and outside it, plus one grey level; the median over the
    sides. A pasted border is a step the content beside it does not have; where the window is
    gone the line is just more content. A few hundred pixels a frame, so every frame of a
    video can be checked.
    """
    height, width = frames.shape[1:3]
    ratios = []
    if window.top > 0:
        ratios.append(_side_ratio(frames[:, :, window.left : window.right], window.top - 1))
    if window.bottom < height:
        ratios.append(_side_ratio(frames[:, :, window.left : window.right], window.bottom - 1))
    across = frames[:, window.top : window.bottom].transpose(0, 2, 1, 3)  # columns become rows
    if window.left > 0:
        ratios.append(_side_ratio(across, window.left - 1))
    if window.right < width:
        ratios.append(_side_ratio(across, window.right - 1))
    if not ratios:
        return np.zeros(len(frames), np.float32)
    return np.median(np.stack(ratios), axis=0).astype(np.float32)


BESIDE = 3  # pixels between a border line and the lines it is compared with


def _side_ratio(frames: np.ndarray, line: int) -> np.ndarray:
    """Per frame: the gradient across rows at gradient row `line` (between pixel rows line and
    line + 1) over the gradient BESIDE rows above and below it, as border_strength explains."""
    first = max(0, line - BESIDE)
    strip = frames[:, first : min(frames.shape[1], line + BESIDE + 2)].astype(np.float32).mean(axis=3)
    gradient = np.abs(np.diff(strip, axis=1)).mean(axis=2)  # [T, rows of the strip - 1]
    rows = gradient.shape[1]
    at = line - first
    on_line = gradient[:, max(0, at - 1) : min(rows, at + 2)].max(axis=1)
    beside = [gradient[:, row] for row in (at - BESIDE, at + BESIDE) if 0 <= row < rows]
    around = np.mean(beside, axis=0) if beside else np.zeros(len(frames), np.float32)
    return on_line / (around + 1.0)
