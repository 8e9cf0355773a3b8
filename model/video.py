"""Video decoding: frames sampled at a fixed rate, resized and upright, with hard limits.

Every video that enters the service passes through `VideoFrames`, so it is written to
fail cleanly (one-line `VideoDecodeError`, never a raw PyAV exception), to keep per-frame
work minimal (all frames must be decoded, but only the sampled ones are colour-converted and
resized, in libswscale, one call per sampled frame) and to stream: frames come out in batches
as they are decoded. `decode_video` collects them, for short clips (training, tools, tests).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import av.sidedata.sidedata
import numpy as np

__all__ = [
    "VIDEO_SUFFIXES",
    "DecodeLimits",
    "DecodeSummary",
    "DecodedVideo",
    "VideoDecodeError",
    "VideoFrames",
    "decode_video",
    "find_videos",
    "probe_video",
]

# File suffixes (lower case) taken for videos when a folder is searched for them: `hapvr train`,
# `hapvr fit-pca` and the benchmarks all find their videos through `find_videos`.
VIDEO_SUFFIXES = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".ts",
        ".mts",
        ".m2ts",
        ".3gp",
        ".ogv",
        ".y4m",
    }
)

# Fast decoding (VideoFrames) needs this many source frames per sample: non-reference frames
# then only move a sample by a few source frames, never drop it.
_FAST_MIN_FRAMES_PER_SAMPLE = 8

# Frames whose timestamp falls this little before a sample time still count as "at" it,
# so that rounding of integer timestamps (1/1000 time bases at 29.97 fps) does not push
# every sample one frame late.
_TIME_EPS = 1e-3


def find_videos(root: Path) -> list[Path]:
    """Files under `root` (recursively) whose suffix, in any case, is in VIDEO_SUFFIXES; sorted by path."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


class VideoDecodeError(ValueError):
    """A file that cannot be turned into frames; `str(err)` is a one-line reason for users."""


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds that keep one hostile or huge upload from exhausting memory or time."""

    max_frames: int = 7200
    max_pixels: int = 8192 * 8192
    max_duration_s: float = 4 * 3600


@dataclass
class DecodedVideo:
    """Sampled RGB frames (short side resized, rotation applied) and their times.

    `frames_expected` is what the container header promised (its duration x fps), None when it
    states no duration; `warnings` say, in a line each, what a damaged stream lost.
    """

    frames: np.ndarray  # uint8 [T, H, W, 3]
    timestamps: np.ndarray  # float64 [T], seconds from the start of the video stream
    duration: float  # seconds
    source_fps: float | None
    frames_expected: int | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream, before any decoding."""

    width: int
    height: int
    duration: float | None
    source_fps: float | None
    codec: str


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read the container header only; raises VideoDecodeError like `decode_video`."""
    with _open(Path(path)) as container:
        stream = _video_stream(container)
        width, height = _display_size(stream)
        return VideoInfo(
            width=width,
            height=height,
            duration=_metadata_duration(container, stream),
            source_fps=_source_fps(stream),
            codec=stream.codec_context.name,
        )


def decode_video(
    path: str | os.PathLike[str],
    fps: float = 1.0,
    short_side: int = 256,
    limits: DecodeLimits = DecodeLimits(),
    *,
    fast: bool = True,
) -> DecodedVideo:
    """Decode `path` whole: every sample of `VideoFrames` (see there) in one array.

    Holds all frames at once (about 350 KB a frame at short side 256), so it is for short
    clips; the service streams through `VideoFrames` instead.
    """
    stream = VideoFrames(path, fps=fps, short_side=short_side, limits=limits, fast=fast, batch_size=64)
    batches = list(stream)
    summary = stream.summary
    return DecodedVideo(
        frames=np.concatenate(batches),
        timestamps=summary.timestamps,
        duration=summary.duration,
        source_fps=summary.source_fps,
        frames_expected=summary.frames_expected,
        warnings=summary.warnings,
    )


@dataclass(frozen=True)
class DecodeSummary:
    """What a whole pass over a file gave: `DecodedVideo` without the frames."""

    timestamps: np.ndarray  # float64 [T]
    duration: float
    source_fps: float | None
    frames_expected: int | None
    warnings: tuple[str, ...]


class VideoFrames:
    """The samples of one file, decoded as they are read: uint8 batches [B, H, W, 3], B <= batch_size.

    Keeps the first frame at or after each time k / fps (k = 0, 1, ...). Sampling follows
    presentation timestamps, so variable-frame-rate files are sampled evenly in time; a frame
    is used at most once, so timestamps strictly increase (a gap in the source leaves a gap in
    the samples rather than repeated frames). Frames are resized so the short side of the
    displayed picture is `short_side` (sample aspect ratio honoured), then turned upright per
    the display matrix. A file that breaks off part-way yields the frames decoded before the
    damage, and a warning: so does one that yields clearly fewer frames than its header
    promises (a corrupt stretch the decoder skipped).

    Only one batch is held at a time, so memory does not grow with the video's length (a
    7,000 s still image held whole took 2.4 GB). Iterate once; `summary` (timestamps,
    duration, losses) is there after the last batch. Limits are checked against the header
    before the first frame is decoded, and again as frames come: VideoDecodeError either way.

    `fast` lets the decoder drop non-reference frames and skip the deblocking filter:
    about a third less CPU on H.264, while a sample may land up to a few source frames
    later (under 0.1 s) and pixels move by about one grey level on average. Every video
    is decoded the same way, so copies and originals see the same treatment. It applies only
    where the source has several frames per sample: at 1 fps from a 1 fps source (a slide
    show, a still) skipping non-reference frames would skip half the samples.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float = 1.0,
        short_side: int = 256,
        limits: DecodeLimits = DecodeLimits(),
        *,
        fast: bool = True,
        batch_size: int = 32,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if short_side < 1:
            raise ValueError(f"short_side must be positive, got {short_side}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.path = Path(path)
        self.fps = fps
        self.short_side = short_side
        self.limits = limits
        self.fast = fast
        self.batch_size = batch_size
        self._summary: DecodeSummary | None = None
        self._started = False

    @property
    def summary(self) -> DecodeSummary:
        if self._summary is None:
            raise RuntimeError("the summary is known once every batch has been read")
        return self._summary

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._started:
            raise RuntimeError("VideoFrames is read once; make another to decode again")
        self._started = True
        yielded = yield from self._pass(self.fast)
        if isinstance(yielded, str) and self.fast:
            # Some streams mark every frame as disposable; decode them in full before giving up.
            yielded = yield from self._pass(False)
        if isinstance(yielded, str):
            raise VideoDecodeError(yielded)

    def _pass(self, fast: bool) -> Generator[np.ndarray, None, str | None]:
        """One pass over the file; returns the reason when no frame came out, else None."""
        with _open(self.path) as container:
            stream = _video_stream(container)
            width, height = _display_size(stream)
            limits = self.limits
            if width * height > limits.max_pixels:
                raise VideoDecodeError(f"resolution {width}x{height} is over the limit of {limits.max_pixels} pixels")
            duration = _metadata_duration(container, stream)
            expected = None
            if duration is not None:
                expected = _check_duration(duration, self.fps, limits)
            source_fps = _source_fps(stream)
            if fast and source_fps is not None and source_fps >= _FAST_MIN_FRAMES_PER_SAMPLE * self.fps:
                stream.codec_context.skip_frame = "NONREF"
                stream.codec_context.options = {"skip_loop_filter": "all"}
            sampler = _Sampler(stream, self.fps, self.short_side, limits)
            batch: list[np.ndarray] = []
            for frame in sampler.run(container):
                batch.append(frame)
                if len(batch) == self.batch_size:
                    yield np.stack(batch)
                    batch = []
            if batch:
                yield np.stack(batch)
        error = sampler.error
        if not sampler.times:
            reason = f": {error}" if error else ""
            return f"no decodable video frames (truncated or corrupt file){reason}"
        count = len(sampler.times)
        span = sampler.last_time + (1.0 / source_fps if source_fps else 0.0)
        warnings = _losses(count, expected, error, span)
        if error is not None or duration is None or duration > span + max(1.0, 2.0 / self.fps):
            # Broken off, or the header promises more than the file holds (a cut download):
            # report what is there.
            duration = span
        else:  # some demuxers (MPEG program streams) estimate the duration short
            duration = max(duration, span)
        self._summary = DecodeSummary(
            timestamps=np.asarray(sampler.times, dtype=np.float64),
            duration=float(duration),
            source_fps=source_fps,
            # Some demuxers estimate the duration short: never expect fewer frames than came out.
            frames_expected=None if expected is None else max(expected, count),
            warnings=warnings,
        )
        return None


def _losses(decoded: int, expected: int | None, error: str | None, span: float) -> tuple[str, ...]:
    """One-line warnings about frames a damaged stream lost (none for a whole one).

    A whole file can come out a frame or two short of its header (rounded timestamps, an
    estimated duration), so a shortfall counts from 2 frames and 5% of those expected on.
    """
    if error is not None:
        return (f"decoding stopped at {span:.1f} s on damage ({error}); {decoded} frames were kept",)
    if expected is not None and expected - decoded >= max(2, expected // 20):
        return (f"decoded {decoded} of the {expected} frames the header promises (truncated or corrupt stream)",)
    return ()


class _Sampler:
    """The decode loop: picks frames by timestamp, converts only the picked ones."""

    def __init__(self, stream: av.video.stream.VideoStream, fps: float, short_side: int, limits: DecodeLimits) -> None:
        self.stream = stream
        self.fps = fps
        self.short_side = short_side
        self.limits = limits
        self.times: list[float] = []
        self.error: str | None = None  # why decoding stopped early, if it did
        self.last_time = 0.0
        self._origin: float | None = None
        if stream.start_time is not None and stream.time_base is not None:
            self._origin = float(stream.start_time * stream.time_base)
        self._frame_step = 1.0 / (_source_fps(stream) or 25.0)
        self._sar = _sar(stream)
        self._size: tuple[int, int] | None = None
        self._orient: tuple[int, bool, bool] | None = None

    def run(self, container: av.container.InputContainer) -> Iterator[np.ndarray]:
        """Decode to the end, yielding each sampled frame; damage ends it early with `error` set."""
        stream = self.stream
        stream.thread_type = "AUTO"
        next_sample = 0.0
        previous: float | None = None
        try:
            for frame in container.decode(stream):
                t = self._frame_time(frame, previous)
                previous = t
                self.last_time = max(self.last_time, t)
                if t > self.limits.max_duration_s:
                    raise VideoDecodeError(f"video runs past the duration limit of {self.limits.max_duration_s:g} s")
                if t + _TIME_EPS < next_sample:
                    continue
                if len(self.times) >= self.limits.max_frames:
                    raise VideoDecodeError(
                        f"more than {self.limits.max_frames} frames at {self.fps:g} fps (frame limit)"
                    )
                rgb = self._convert(frame)
                self.times.append(t)
                next_sample = (math.floor((t + _TIME_EPS) * self.fps) + 1) / self.fps
                yield rgb
        except VideoDecodeError:
            raise
        except (av.error.FFmpegError, EOFError, OSError, ValueError) as exc:
            self.error = _reason(exc)

    def _frame_time(self, frame: av.VideoFrame, previous: float | None) -> float:
        """Seconds since the stream start; frames without a timestamp follow the previous one."""
        if frame.pts is None or frame.time_base is None:
            return 0.0 if previous is None else previous + self._frame_step
        t = float(frame.pts * frame.time_base)
        if self._origin is None or t < self._origin:
            # First timestamp decides the origin when the header has none; earlier frames
            # (negative composition offsets) move it back so times stay non-negative.
            self._origin = t if self._origin is None else min(self._origin, t)
        return t - self._origin

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        if frame.width * frame.height > self.limits.max_pixels:
            raise VideoDecodeError(
                f"resolution {frame.width}x{frame.height} is over the limit of {self.limits.max_pixels} pixels"
            )
        if self._size is None:
            self._size = _target_size(frame.width, frame.height, self._sar, self.short_side)
            self._orient = _orientation(frame)
        width, height = self._size
        rgb = frame.reformat(width, height, format="rgb24", threads=1).to_ndarray()
        return _apply_orientation(rgb, self._orient)


# Demuxers a user's upload may use. Anything else (still images, text rendered as video,
# playlists that point at other files or URLs) is refused before it is parsed further.
# Audio-only formats are listed so that such files get the "audio only" answer.
_CONTAINER_FORMATS = (
    "mov",
    "mp4",
    "m4a",
    "3gp",
    "3g2",
    "mj2",
    "matroska",
    "webm",
    "avi",
    "mpeg",
    "mpegts",
    "mpegvideo",
    "m4v",
    "h264",
    "hevc",
    "obu",
    "ivf",
    "flv",
    "asf",
    "ogg",
    "nut",
    "mxf",
    "dv",
    "gif",
    "apng",
    "yuv4mpegpipe",
    "wav",
    "w64",
    "mp3",
    "aac",
    "flac",
)
_OPEN_OPTIONS = {"format_whitelist": ",".join(_CONTAINER_FORMATS), "protocol_whitelist": "file"}


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoDecodeError(f"no such file: {path.name}")
    if path.is_dir():
        raise VideoDecodeError(f"is a directory, not a video file: {path.name}")
    if path.stat().st_size == 0:
        raise VideoDecodeError("empty file (0 bytes)")
    try:
        return av.open(str(path), mode="r", options=_OPEN_OPTIONS, metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        raise VideoDecodeError("unreadable file: not a video, or a damaged or truncated one") from exc
    except av.error.EOFError as exc:
        raise VideoDecodeError("truncated file: it ends before its first video frame") from exc
    except av.error.ArgumentError as exc:
        raise VideoDecodeError("unsupported file type: not a video container (still image, text or playlist?)") from exc
    except (av.error.FFmpegError, OSError, UnicodeError, ValueError) as exc:
        raise VideoDecodeError(f"cannot open as a video: {_reason(exc)}") from exc


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    streams = [s for s in container.streams.video if not _is_cover_art(s)]
    if not streams:
        if container.streams.audio:
            raise VideoDecodeError("no video stream: the file has audio only")
        if container.streams.video:
            raise VideoDecodeError("no video stream: only a still cover image")
        raise VideoDecodeError("no video stream in the file")
    stream = streams[0]
    if stream.codec_context is None:
        raise VideoDecodeError(f"unsupported video codec in stream {stream.index}")
    return stream


def _is_cover_art(stream: av.video.stream.VideoStream) -> bool:
    """Attached pictures (album art in audio files) are not video."""
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _display_size(stream: av.video.stream.VideoStream) -> tuple[int, int]:
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise VideoDecodeError("video stream has no frame size (corrupt header)")
    return width, height


def _metadata_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _source_fps(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0 and rate.denominator != 0:
            value = float(rate)
            if 0 < value < 1000:
                return value
    return None


def _check_duration(duration: float, fps: float, limits: DecodeLimits) -> int:
    """The frames `duration` gives at `fps`; VideoDecodeError when over the limits."""
    if duration > limits.max_duration_s:
        raise VideoDecodeError(f"duration {duration:.1f} s is over the limit of {limits.max_duration_s:g} s")
    expected = math.floor(duration * fps + _TIME_EPS)
    if expected > limits.max_frames:
        raise VideoDecodeError(
            f"{duration:.1f} s at {fps:g} fps gives {expected} frames, over the limit of {limits.max_frames}"
        )
    return expected


def _sar(stream: av.video.stream.VideoStream) -> float:
    """Pixel aspect ratio (anamorphic DVD/broadcast files); 1.0 when absent or absurd."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    if sar is None or sar.denominator == 0 or not 0.1 < float(sar) < 10:
        return 1.0
    return float(sar)


def _target_size(width: int, height: int, sar: float, short_side: int) -> tuple[int, int]:
    """Output (width, height) before rotation: displayed short side -> `short_side`."""
    display_w = width * sar
    scale = short_side / min(display_w, height)
    return max(1, round(display_w * scale)), max(1, round(height * scale))


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    # PyAV's stub types Frame.side_data as a TypedDict; at runtime it is a SideDataContainer,
    # which iterates over SideData buffers.
    side_data = cast(av.sidedata.sidedata.SideDataContainer, frame.side_data)
    for side in side_data:
        if side.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            data = bytes(side)
            if len(data) >= 36:
                return struct.unpack("<9i", data[:36])
    return None


def _orientation(frame: av.VideoFrame) -> tuple[int, bool, bool]:
    """(k, hflip, vflip): turn k quarter turns counter-clockwise, then mirror.

    Follows the ffmpeg command line's autorotate rules (transpose / hflip / vflip chosen by
    the display matrix signs), so a file looks upright here exactly when it does in a
    player. Angles off a multiple of 90 degrees round to the nearest quarter turn.
    """
    matrix = _display_matrix(frame)
    if matrix is None:
        return (0, False, False)
    rotation = frame.rotation  # counter-clockwise degrees
    theta = -round(rotation)  # clockwise, as ffmpeg's get_rotation
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    quarter = round(theta / 90) % 4  # clockwise quarter turns
    if quarter == 1:
        # ffmpeg: transpose=cclock_flip if m[3] > 0 else clock
        return (1, False, True) if matrix[3] > 0 else (3, False, False)
    if quarter == 3:
        # ffmpeg: transpose=clock_flip if m[3] < 0 else cclock
        return (3, False, True) if matrix[3] < 0 else (1, False, False)
    if quarter == 2:
        return (0, matrix[0] < 0, matrix[4] < 0)
    return (0, False, matrix[4] < 0)


def _apply_orientation(rgb: np.ndarray, orient: tuple[int, bool, bool] | None) -> np.ndarray:
    if orient is None or orient == (0, False, False):
        return rgb
    turns, hflip, vflip = orient
    out = np.rot90(rgb, k=turns) if turns else rgb
    if hflip:
        out = out[:, ::-1]
    if vflip:
        out = out[::-1]
    return np.ascontiguousarray(out)


def _reason(exc: BaseException) -> str:
    """A one-line cause from a PyAV / OS error, without file paths or tracebacks."""
    if isinstance(exc, av.error.FFmpegError):
        text = exc.strerror or type(exc).__name__
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
