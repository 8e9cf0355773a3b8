"""Following inner windows through one streamed decode: where each starts, shows and ends.

VideoEmbedder decodes a video once, in batches (32 s at 1 fps), and keeps no batch once it is
encoded. While no window is showing, every batch is searched for one with the test the first
batch has always had (model.inner_window, on frames of about WINDOW_SEARCH_SIDE pixels): every
SEARCH_BLOCK frames on the last two blocks (16 s at 1 fps, across batches too), then on the
whole batch, from gradient sums computed once per frame. So a picture-in-picture that appears
at 0:45 is found, and so is one shown for 16 s anywhere, where a batch-sized search needs most
of an aligned 32 s. A window found is then checked frame by frame
(model.inner_window.border_strength, a few hundred pixels a frame): back into the previous
batch, held for that purpose while nothing shows, so its crop starts where its border starts to
show, and on through the following batches: frames without the border wait, and are cropped if
it shows again within END_RUN frames (a dark scene inside the window) or the video ends first,
or dropped when END_RUN of them in a row end it, after which the batches are searched again. Only frames where a window
shows are cropped, with their own frame numbers; windows one after another all go into the
video's one window record.

Measured on the held-out benchmark's pip and letterbox copies against unedited segments under
the same rectangles (1 fps, 128 px): a present border scores a median of 15.6 and falls under
SHOWS = 2 in 4% of frames, an absent one reaches 2 in 0.15% and 1.5 (STAYS) in 1.9%.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from model.inner_window import GradientSums, Window, border_strength, find_window, gradient_sums, window_in

# The window is looked for on frames of about this short side: the ridges it follows are lines
# several pixels long, so half the decode size finds the same window at a quarter of the cost.
WINDOW_SEARCH_SIDE = 128
SHOWS = 2.0  # border strength from which a frame starts a window
STAYS = 1.5  # and below which a frame counts as one without it, once it has started
END_RUN = 8  # frames in a row without the border that end a window
SEARCH_BLOCK = 8  # frames: windows are looked for in the last two blocks every block, and in whole batches
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
    waiting: list[WindowCrop] = field(default_factory=list)  # those frames' crops, kept if it shows again

    def strength(self, frames: np.ndarray) -> np.ndarray:
        return border_strength(frames[:, :: self.step, :: self.step], self.small)


@dataclass
class WindowTrack:
    """Feed it every batch of a decode in order, then `finish`; each returns window crops to embed."""

    windows: list[Window] = field(default_factory=list)  # every window found, in order
    _next_row: int = 0  # frame number of the next batch's first frame
    _free_from: int = 0  # frames before this one are cropped already (or were passed over)
    _held: tuple[int, np.ndarray] | None = None  # the previous batch while nothing shows
    _showing: _Showing | None = None
    _previous: GradientSums | None = None  # the last block searched, while nothing shows
    _previous_row: int = 0  # and its first frame

    def feed(self, batch: np.ndarray) -> list[WindowCrop]:
        """The crops of `batch` [T, H, W, 3] (and of the held batch, when a window is found in this
        one), in time order."""
        first = self._next_row
        self._next_row += len(batch)
        if self._showing is None:
            found = self._search(first, batch)
            if found is None:
                self._held = (first, batch)
                return []
            self._previous = None
            return self._start(*found, first, batch)
        return self._follow(first, batch)

    @property
    def showing(self) -> bool:
        """Whether a window is being followed (the next batch is then not searched)."""
        return self._showing is not None

    def finish(self) -> list[WindowCrop]:
        """The crops still waiting at the end of the decode: fewer than END_RUN frames without the
        border end no window, so a window showing until the last frames keeps them."""
        if self._showing is None:
            return []
        waiting, self._showing.waiting = self._showing.waiting, []
        return waiting

    def _search(self, first: int, batch: np.ndarray) -> tuple[_Showing, int] | None:
        """A window in the batch: at every SEARCH_BLOCK frames in the last two blocks (across
        batches too), then in the whole batch where no such span was all of it; each frame's
        gradients are computed once. A block alone is searched only as a whole batch (a video of
        one block): on a fixed camera's footage, 8 frames found a scene's edges a window once.
        Returns the window and the first frame of the stretch it was found in."""
        step = _search_step(batch)
        blocks = np.array_split(batch[:, ::step, ::step], -(-len(batch) // SEARCH_BLOCK))
        alone = self._previous is None and len(blocks) == 1
        whole = None
        row = first
        for block in blocks:
            sums = gradient_sums(block)
            span = None if self._previous is None else self._previous + sums
            span_first = self._previous_row
            self._previous, self._previous_row = sums, row
            row += len(block)
            whole = sums if whole is None else whole + sums
            if span is not None and (found := window_in(span)) is not None:
                return _showing(found, step, batch.shape), span_first
        if (len(blocks) > 2 or alone) and whole is not None and (found := window_in(whole)) is not None:
            return _showing(found, step, batch.shape), first
        return None

    def _start(self, found: _Showing, found_from: int, first: int, batch: np.ndarray) -> list[WindowCrop]:
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
        # The window stands out over the stretch it was found in, so a start its frames do not
        # single out (a faint border) is that stretch's first frame.
        skip = start if start is not None else max(0, found_from - parts[0][0])
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
        """Crop the frames from the last one cropped to the last one showing the window; frames
        without it wait (as crops) until it shows again, and END_RUN of them in a row end it."""
        showing = self._showing
        assert showing is not None
        last_shown, ended = -1, False
        for row, strength in enumerate(showing.strength(frames)):
            if strength >= STAYS:
                showing.missing, last_shown = 0, row
            else:
                showing.missing += 1
                if showing.missing >= END_RUN:
                    ended = True
                    break
        crops = []
        if last_shown >= 0:
            crops = [
                *showing.waiting,
                WindowCrop(np.arange(first, first + last_shown + 1), showing.window.crop(frames[: last_shown + 1])),
            ]
            showing.waiting = []
        if ended:
            self._showing = None
            self._held = (first, frames)  # a next window may start in the rest of this batch
        else:
            rest = frames[last_shown + 1 :]
            if len(rest):  # a copy, so the batch is not kept alive for a few frames
                showing.waiting.append(
                    WindowCrop(np.arange(first + last_shown + 1, first + len(frames)), showing.window.crop(rest).copy())
                )
        self._free_from = first + last_shown + 1 if ended else first + len(frames)
        return crops


def locate(frames: np.ndarray) -> _Showing | None:
    """A window in uint8 frames [T, H, W, 3] taken together (the rule for a video's first batch
    before model.window_track), looked for at about WINDOW_SEARCH_SIDE pixels' short side."""
    step = _search_step(frames)
    found = find_window(frames[:, ::step, ::step])
    return _showing(found, step, frames.shape) if found is not None else None


def _search_step(frames: np.ndarray) -> int:
    return max(1, min(frames.shape[1:3]) // WINDOW_SEARCH_SIDE)


def _showing(small: Window, step: int, shape: tuple[int, ...]) -> _Showing:
    """A window found on frames subsampled by `step`, in the pixels of frames of `shape`."""
    height, width = shape[1:3]
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
