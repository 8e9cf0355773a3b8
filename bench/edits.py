"""Edited copies of a clip, the positives of the near-duplicate benchmark.

Each edit reads the clip into memory (10-second clips at 360p are about 200 MB at most),
transforms the frames with numpy (scaling through libswscale via PyAV) and writes H.264
with PyAV, so no ffmpeg binary is needed. Edits are deterministic given `seed`; the
parameters drawn are stored in the output's `comment` tag as JSON (`edit_params`), so an
evaluation can know which part of the original a copy holds.

    make_edit("crop", src, out, seed=3)
    make_edit("pip", src, out, other=unrelated_clip)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.footage import VideoWriter, iter_frames, probe
from model.fileio import atomic_path

DEFAULT_CRF = 23


@dataclass
class Clip:
    """Frames in memory and their constant rate; `params` records what an edit did."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    fps: Fraction
    crf: int = DEFAULT_CRF
    params: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.frames) / float(self.fps)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.frames.shape[2], self.frames.shape[1]


Edit = Callable[[Clip, np.random.Generator, "Clip | None"], Clip]


def read_clip(path: str | os.PathLike[str], *, max_seconds: float | None = None) -> Clip:
    """All frames of `path` as RGB, at the stream's average rate."""
    _, rate, _, _ = probe(path)
    fps = Fraction(rate) if rate else Fraction(25)
    frames = [frame.to_ndarray(format="rgb24") for _, frame in iter_frames(path, 0.0, max_seconds)]
    if not frames:
        raise ValueError(f"no frames in {Path(path).name}")
    return Clip(np.stack(frames), fps)


def write_clip(clip: Clip, out: str | os.PathLike[str]) -> Path:
    """Encode `clip` (H.264 by default; suffix picks the container) with its params as a tag."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    width, height = clip.size
    with atomic_path(out, mode=0o644) as tmp:  # the temp name keeps the suffix: it picks the container
        writer = VideoWriter(tmp, width, height, clip.fps, crf=clip.crf)
        try:
            if clip.params:
                writer.container.metadata["comment"] = json.dumps(clip.params, sort_keys=True)
            for image in clip.frames:
                writer.write(image)
        finally:
            writer.close()
    return out


def edit_params(path: str | os.PathLike[str]) -> dict:
    """The parameters `make_edit` stored in a file ({} for files it did not make)."""
    with av.open(str(path)) as container:
        text = container.metadata.get("comment", "")
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------------------------
# Frame helpers


def resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize each frame in libswscale (area filter when shrinking, bicubic when growing)."""
    width, height = _even(width), _even(height)
    if frames.shape[2] == width and frames.shape[1] == height:
        return frames
    shrink = width * height < frames.shape[1] * frames.shape[2]
    method = "AREA" if shrink else "BICUBIC"
    out = np.empty((len(frames), height, width, 3), np.uint8)
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        out[i] = frame.reformat(width, height, interpolation=method).to_ndarray()
    return out


def retime(clip: Clip, fps: Fraction, speed: float = 1.0) -> Clip:
    """Frames at the new rate: output frame j shows source time j * speed / fps."""
    count = max(1, int(clip.duration * float(fps) / speed + 1e-6))
    times = np.arange(count) * speed / float(fps)
    index = np.minimum(np.floor(times * float(clip.fps) + 1e-6).astype(int), len(clip.frames) - 1)
    return replace(clip, frames=clip.frames[index], fps=fps)


def fit(clip: Clip, like: Clip, seconds: float | None = None, start: float = 0.0) -> np.ndarray:
    """`clip`'s frames at `like`'s rate and size, `seconds` long (looping).

    The picture is scaled to cover the new size and centre-cropped, so nothing is stretched.
    """
    width, height = like.size
    seconds = like.duration if seconds is None else seconds
    count = max(1, round(seconds * float(like.fps)))
    times = start + np.arange(count) / float(like.fps)
    index = np.floor(times * float(clip.fps) + 1e-6).astype(int) % len(clip.frames)
    src_w, src_h = clip.size
    scale = max(width / src_w, height / src_h)
    cover_w, cover_h = max(width, _even(src_w * scale + 1)), max(height, _even(src_h * scale + 1))
    covered = resize(clip.frames[index], cover_w, cover_h)
    x, y = (covered.shape[2] - width) // 2, (covered.shape[1] - height) // 2
    return np.ascontiguousarray(covered[:, y : y + height, x : x + width])


def _even(n: float) -> int:
    """yuv420p needs even sizes."""
    return max(2, int(n) // 2 * 2)


def _blend(frames: np.ndarray, patch: np.ndarray, alpha: np.ndarray | float, y: int, x: int) -> None:
    """Alpha-blend `patch` [h, w, 3] onto every frame at (y, x), in place."""
    h, w = patch.shape[:2]
    region = frames[:, y : y + h, x : x + w].astype(np.float32)
    mixed = region * (1 - alpha) + patch.astype(np.float32) * alpha
    frames[:, y : y + h, x : x + w] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def _subrange(clip: Clip, rng: np.random.Generator, low: float, high: float) -> tuple[int, int]:
    """A random run of frames covering a fraction in [low, high) of the clip."""
    total = len(clip.frames)
    length = max(1, int(round(total * rng.uniform(low, high))))
    start = int(rng.integers(0, total - length + 1))
    return start, start + length


# ---------------------------------------------------------------------------------------
# The edits


def reencode(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Heavy compression: blocking, smearing, lost texture."""
    crf = int(rng.integers(38, 45))
    return replace(clip, crf=crf, params={"crf": crf})


def rescale(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Down to 35 to 60 percent of the size (a low-resolution re-upload)."""
    scale = float(rng.uniform(0.35, 0.6))
    width, height = clip.size
    frames = resize(clip.frames, max(32, round(width * scale)), max(32, round(height * scale)))
    return replace(clip, frames=frames, params={"scale": scale})


def crop(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Keep 60 to 80 percent of each side, anywhere in the frame."""
    width, height = clip.size
    keep_w, keep_h = rng.uniform(0.6, 0.8, size=2)
    w, h = _even(width * keep_w), _even(height * keep_h)
    x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    frames = np.ascontiguousarray(clip.frames[:, y : y + h, x : x + w])
    return replace(clip, frames=frames, params={"box": [x, y, w, h]})


def hflip(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Mirror left to right."""
    return replace(clip, frames=np.ascontiguousarray(clip.frames[:, :, ::-1]), params={})


def color(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Hue turn, saturation, contrast, brightness and gamma changed together."""
    hue = float(rng.uniform(20, 60) * rng.choice([-1, 1]))
    saturation = float(rng.uniform(0.4, 1.6))
    contrast = float(rng.uniform(0.7, 1.3))
    brightness = float(rng.uniform(-35, 35))
    gamma = float(rng.uniform(0.7, 1.4))
    # Hue rotation about the grey axis, then saturation, as one 3x3 matrix on RGB.
    angle = np.deg2rad(hue)
    cos, sin = np.cos(angle), np.sin(angle)
    k = np.full((3, 3), 1 / 3)
    cross = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / np.sqrt(3)
    rotation = cos * np.eye(3) + (1 - cos) * k + sin * cross
    matrix = (k + saturation * (rotation - k)) * contrast
    offset = 127.5 * (1 - contrast) + brightness
    lut = np.clip(255 * (np.arange(256) / 255) ** gamma + 0.5, 0, 255).astype(np.uint8)
    out = np.empty_like(clip.frames)
    m = matrix.T.astype(np.float32)
    for i, image in enumerate(clip.frames):
        mixed = image.astype(np.float32) @ m + offset
        out[i] = lut[np.clip(mixed + 0.5, 0, 255).astype(np.uint8)]
    params = {"hue": hue, "saturation": saturation, "contrast": contrast, "brightness": brightness, "gamma": gamma}
    return replace(clip, frames=out, params=params)


def blur(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Strong blur: an area-averaged shrink by 3 to 6 times, then a smooth bicubic enlarge."""
    factor = float(rng.uniform(3, 6))
    width, height = clip.size
    small = resize(clip.frames, max(8, round(width / factor)), max(8, round(height / factor)))
    return replace(clip, frames=resize(small, width, height), params={"factor": factor})


def overlay(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """A semi-opaque logo in a corner and an opaque caption box along an edge."""
    width, height = clip.size
    frames = clip.frames.copy()
    # Logo: a few coloured discs and bars on a tile, 18 to 28 percent of the width.
    side = max(8, int(width * rng.uniform(0.18, 0.28)))
    yy, xx = np.mgrid[0:side, 0:side] / side
    logo = np.zeros((side, side, 3), np.float32) + rng.uniform(0, 255, 3)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        logo[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    logo[(yy > 0.75) & (yy < 0.85)] = rng.uniform(0, 255, 3)
    margin = max(2, width // 40)
    corner = int(rng.integers(0, 4))
    y = margin if corner < 2 else height - side - margin
    x = margin if corner % 2 == 0 else width - side - margin
    y, x = max(0, y), max(0, x)
    logo = logo[: height - y, : width - x]
    alpha = float(rng.uniform(0.6, 0.85))
    _blend(frames, logo, alpha, y, x)
    # Caption box: full width, 10 to 16 percent of the height, on the edge the logo avoids.
    box_h = max(4, int(height * rng.uniform(0.1, 0.16)))
    box_y = height - box_h - margin if corner < 2 else margin
    box = np.empty((box_h, width, 3), np.float32)
    box[:] = rng.uniform(0, 80, 3)
    stripe = rng.uniform(150, 255, 3)
    for _ in range(int(rng.integers(5, 12))):  # "words": light bars on the dark box
        bx, bw = int(rng.integers(0, width)), int(rng.integers(width // 30 + 1, width // 8 + 2))
        box[box_h // 3 : 2 * box_h // 3, bx : bx + bw] = stripe
    _blend(frames, box, 1.0, max(0, box_y), 0)
    params = {"logo": [x, y, logo.shape[1], logo.shape[0]], "alpha": alpha, "box": [0, box_y, width, box_h]}
    return replace(clip, frames=frames, params=params)


def letterbox(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Black bars: wide pictures into a 4:3 canvas, the others into a 16:9 one (and a little shrink)."""
    width, height = clip.size
    if width / height > 1.5:  # letterbox: bars above and below
        canvas_w, canvas_h = width, _even(width * 3 / 4)
    else:  # pillarbox: bars left and right
        canvas_w, canvas_h = _even(height * 16 / 9), height
    shrink = float(rng.uniform(0.85, 1.0))
    scale = min(canvas_w / width, canvas_h / height) * shrink
    w, h = _even(width * scale), _even(height * scale)
    content = resize(clip.frames, w, h)
    frames = np.zeros((len(content), canvas_h, canvas_w, 3), np.uint8)
    y, x = (canvas_h - h) // 2, (canvas_w - w) // 2
    frames[:, y : y + h, x : x + w] = content
    return replace(clip, frames=frames, params={"canvas": [canvas_w, canvas_h], "box": [x, y, w, h]})


def pip(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """The clip shrunk to 35 to 50 percent, placed over unrelated footage."""
    if other is None:
        raise ValueError("pip needs other footage for the background")
    width, height = clip.size
    frames = fit(other, clip).copy()
    scale = float(rng.uniform(0.35, 0.5))
    w, h = _even(width * scale), _even(height * scale)
    inner = resize(clip.frames, w, h)
    margin = max(2, width // 30)
    x = int(rng.integers(margin, max(margin + 1, width - w - margin)))
    y = int(rng.integers(margin, max(margin + 1, height - h - margin)))
    frames[:, y : y + h, x : x + w] = inner[: len(frames)]
    return replace(clip, frames=frames, params={"box": [x, y, w, h]})


def speed(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Faster (1.25 to 2 times) or slower (0.5 to 0.8 times), at the same frame rate."""
    factor = float(rng.uniform(1.25, 2.0) if rng.random() < 0.5 else rng.uniform(0.5, 0.8))
    out = retime(clip, clip.fps, factor)
    return replace(out, params={"speed": factor})


def frame_rate(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """Another frame rate for the same timeline (frames dropped or repeated)."""
    choices = [f for f in (Fraction(10), Fraction(12), Fraction(15), Fraction(50)) if f != clip.fps]
    fps = choices[int(rng.integers(0, len(choices)))]
    out = retime(clip, fps)
    return replace(out, params={"fps": float(fps), "source_fps": float(clip.fps)})


def subclip(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """A contiguous 30 to 60 percent of the clip."""
    start, end = _subrange(clip, rng, 0.3, 0.6)
    fps = float(clip.fps)
    return replace(clip, frames=clip.frames[start:end].copy(), params={"source_span": [start / fps, end / fps]})


def splice(clip: Clip, rng: np.random.Generator, other: Clip | None = None) -> Clip:
    """40 to 70 percent of the clip inside unrelated footage (2 to 5 s before and after)."""
    if other is None:
        raise ValueError("splice needs other footage around the copied part")
    start, end = _subrange(clip, rng, 0.4, 0.7)
    head_s, tail_s = rng.uniform(2, 5, size=2)
    head = fit(other, clip, head_s)
    tail = fit(other, clip, tail_s, start=head_s)
    fps = float(clip.fps)
    frames = np.concatenate([head, clip.frames[start:end], tail])
    params = {"source_span": [start / fps, end / fps], "copy_span": [len(head) / fps, (len(head) + end - start) / fps]}
    return replace(clip, frames=frames, params=params)


EDITS: dict[str, Edit] = {
    "reencode": reencode,
    "rescale": rescale,
    "crop": crop,
    "hflip": hflip,
    "color": color,
    "blur": blur,
    "overlay": overlay,
    "letterbox": letterbox,
    "pip": pip,
    "speed": speed,
    "fps": frame_rate,
    "subclip": subclip,
    "splice": splice,
}
NEEDS_OTHER = frozenset({"pip", "splice"})


def make_edit(
    kind: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    other: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write an edited copy of `src` to `out` (H.264 mp4 unless the suffix says otherwise).

    `other` is unrelated footage, required by "pip" and "splice". The same
    (kind, src, other, seed) gives the same edit.
    """
    if kind not in EDITS:
        raise ValueError(f"unknown edit {kind!r}; known: {', '.join(EDITS)}")
    if kind in NEEDS_OTHER and other is None:
        raise ValueError(f"edit {kind!r} needs other footage (other=...)")
    clip = read_clip(src)
    other_clip = read_clip(other) if other is not None and kind in NEEDS_OTHER else None
    rng = np.random.default_rng([seed, sum(kind.encode())])
    edited = EDITS[kind](clip, rng, other_clip)
    edited.params = {
        "edit": kind,
        "seed": seed,
        "source": Path(src).name,
        **({"other": Path(other).name} if other_clip is not None else {}),
        **edited.params,
    }
    return write_clip(edited, out)
