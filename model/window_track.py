"""Following inner windows through one streamed decode: where each starts, shows and ends.

VideoEmbedder decodes a video once, in batches (32 s at 1 fps), and keeps no batch once it is
encoded. While no window is showing, every batch is searched for one with the same test the
first batch has always had (model.inner_window.find_window on frames of about
WINDOW_SEARCH_SIDE pixels, 10-20 ms a batch), so a picture-in-picture that appears at 0:45 is
found in the batch that holds it. A window found is then checked frame by frame
(model.inner_window.border_strength, a few hundred pixels a frame): back into the previous
batch, held for that purpose while nothing shows, so its crop starts at the first frame the
border shows in, and on through the following batches, where a border missing from STAYS for
END_RUN frames in a row ends it (shorter gaps, a dark scene inside the window, are bridged)
and the batches after are searched again. Only frames where a window shows are cropped, on the
video's own frame numbers; several windows one after another go into the one window record.

Measured on the held-out benchmark's pip and letterbox copies against unedited segments under
the same rectangles (1 fps, 128 px): a present border scores a median of 15.6 and falls under
SHOWS = 2 in 4% of frames, an absent one reaches 2 in 0.15% and 1.5 (STAYS) in 1.9%.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from model.inner_window import Window, border_strength, find_window

# The window is looked for on frames of about this short side: the ridges it follows are lines
# several pixels long, so half the decode size finds the same window at a quarter of the cost.
WINDOW_SEARCH_SIDE = 128
SHOWS = 2.0  # border strength from which a frame starts a window
STAYS = 1.5  # and below which a frame counts as one without it, once it has started
END_RUN = 8  # frames in a row without the border that end a window
START_RUN = 8  # a start needs the border in at least half of the frames from it on (of these)


@dataclass(frozen=True)
class WindowCrop:
    """Frames of one window: their numbers in the decode and their crops [N, h, w, 3]."""

    rows: np.ndarray
    frames: np.ndarray


@dataclass
class _Showing:
    window: Window  # in the decoded frames' pixels
    small: Window  # in the subsampled frames' pixels, where the border is checked
    step: int
    missing: int = 0  # frames in a row without the border so far

    def strength(self, frames: np.ndarray) -> np.ndarray:
        return border_strength(frames[:, :: self.step, :: self.step], self.small)


@dataclass
class WindowTrack:
    """Feed it every batch of a decode in order; it returns the window crops to embed."""

    windows: list[Window] = field(default_factory=list)  # every window found, in order
    _next_row: int = 0  # frame number of the next batch's first frame
    _free_from: int = 0  # frames before this one are cropped already (or were passed over)
    _held: tuple[int, np.ndarray] | None = None  # the previous batch while nothing shows
    _showing: _Showing | None = None

    def feed(self, batch: np.ndarray) -> list[WindowCrop]:
        """The crops of `batch` [T, H, W, 3] (and of the held batch, when a window is found in this
        one), in time order."""
        first = self._next_row
        self._next_row += len(batch)
        if self._showing is None:
            found = locate(batch)
            if found is None:
                self._held = (first, batch)
                return []
            return self._start(found, first, batch)
        return self._follow(first, batch)

    def _start(self, found: _Showing, first: int, batch: np.ndarray) -> list[WindowCrop]:
        self._showing = found
        self.windows.append(found.window)
        earlier: list[tuple[int, np.ndarray]] = []
        if self._held is not None:
            held_first, held = self._held
            skip = max(0, self._free_from - held_first)
            earlier = [(held_first + skip, held[skip:])] if skip < len(held) else []
        self._held = None
        parts = [*earlier, (first, batch)]
        start = _start_of(np.concatenate([found.strength(frames) for _, frames in parts]))
        # The window stands out over the whole batch it was found in, so a start its frames do
        # not single out (a faint border) is that batch's first frame.
        skip = start if start is not None else sum(len(frames) for _, frames in parts[:-1])
        crops = []
        for part_first, frames in parts:
            take = frames[skip:]
            skip = max(0, skip - len(frames))
            if len(take):
                crops.extend(self._follow(part_first + len(frames) - len(take), take))
            if self._showing is None:  # ended already (in the held batch): search from the next batch
                self._held = (first, batch)
                break
        return crops

    def _follow(self, first: int, frames: np.ndarray) -> list[WindowCrop]:
        """Crop frames while the window shows; END_RUN frames without it end it."""
        showing = self._showing
        assert showing is not None
        kept = 0
        for strength in showing.strength(frames):
            showing.missing = showing.missing + 1 if strength < STAYS else 0
            if showing.missing >= END_RUN:
                break
            kept += 1
        crops = [WindowCrop(np.arange(first, first + kept), showing.window.crop(frames[:kept]))] if kept else []
        self._free_from = first + kept
        if kept < len(frames):
            self._showing = None
            self._held = (first, frames)  # a next window may start in the rest of this batch
        return crops


def locate(frames: np.ndarray) -> _Showing | None:
    """A window in uint8 frames [T, H, W, 3], looked for on a subsampled copy of about
    WINDOW_SEARCH_SIDE pixels' short side."""
    height, width = frames.shape[1:3]
    step = max(1, min(height, width) // WINDOW_SEARCH_SIDE)
    small = find_window(frames[:, ::step, ::step])
    if small is None:
        return None
    window = replace(
        small,
        top=small.top * step,
        bottom=min(height, small.bottom * step),
        left=small.left * step,
        right=min(width, small.right * step),
    )
    return _Showing(window, small, step)


def _start_of(strength: np.ndarray) -> int | None:
    """Where a window starts, from its border strength in each frame: the first frame that shows
    it (at least SHOWS) where at least half of START_RUN frames from it on do, then back over the
    frames before, as far as the border stays (at least STAYS) with gaps shorter than END_RUN:
    a border ends the same way (a faint one, in a dark scene, is still the window)."""
    shows = strength >= SHOWS
    firm = [int(t) for t in np.flatnonzero(shows) if shows[t : t + START_RUN].mean() >= 0.5]
    if not firm:
        return None
    start, missing = firm[0], 0
    for row in range(firm[0] - 1, -1, -1):
        if strength[row] >= STAYS:
            start, missing = row, 0
        else:
            missing += 1
            if missing >= END_RUN:
                break
    return start
