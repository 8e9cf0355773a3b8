"""A video file to the features the indexer stores: the ingest hot path.

decode (model.video, 1 fps, short side 256) -> frame encoder (backbone, regional pooling, PCA;
batched) -> the similarity network's `index()` (attention) -> region features in float16 and one
unit vector per frame for FAISS (model.similarity.network.frame_vectors).

Streaming. Frames come from the decoder in batches (model.video.VideoFrames) and each batch is
encoded and indexed before the next is kept, so memory stays at a few batches of frames
whatever the video's length: indexing a 7,000 s video held 2.4 GB of frames before, and holds
the features alone (about 9 KB a frame) now. A producer thread decodes up to `read_ahead`
batches while the encoder works (PyAV and onnxruntime both release the GIL), so decoding and
encoding overlap inside one video. Before streaming, overlapping across whole files
(four 60 s 640x360 H.264 clips at 1 fps on this 2-core box, load 6-8) took ingest from
38-42x real time to 44-45x.

Inner window. With `with_window`, every batch of frames is searched for a picture inside the
picture (model.inner_window: picture-in-picture, letterbox or pillarbox bars) while none is
showing, and a window found is followed frame by frame until it ends (model.window_track): the
frames where it shows are also encoded cropped to it, from the same decode, into a second
VideoFeatures with those frames' own times (a crop does not change time). A window that appears
at 0:45 is found as one at 0:00 is. The search compares both versions, so a clip shown small
inside other footage is matched at full size.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from model.features import VideoFeatures
from model.similarity.network import frame_vectors
from model.video import DecodeLimits, DecodeSummary, VideoDecodeError, VideoFrames
from model.window_track import WindowCrop, WindowTrack

if TYPE_CHECKING:
    from model.checkpoint import ModelBundle
    from model.encoders.frame_encoder import FrameEncoder


@dataclass(frozen=True)
class EmbedTimings:
    """Seconds spent per stage of one video (for metrics and the ingest benchmark)."""

    decode: float
    encode: float
    index: float
    frames: int
    window: float = 0.0  # looking for and following inner windows (their crops' encoding counts in encode/index)

    @property
    def total(self) -> float:
        return self.decode + self.encode + self.index + self.window


@dataclass
class Embedded:
    """One embedded file: its features (or flipped variant too) and where the time went.

    `window` holds the features of the inner windows' crops (the frames where a window shows, at
    their own times) and `window_box` the first window's (x, y, width, height) in the decoded
    frames, when `with_window` found one.
    """

    features: VideoFeatures
    timings: EmbedTimings
    flipped: VideoFeatures | None = None
    window: VideoFeatures | None = None
    window_box: tuple[int, int, int, int] | None = None


class VideoEmbedder:
    """Embeds video files with one model; build once per process (the encoder warms up once).

    Decoding, `encode` and `index` run batch_size frames at a time, so a long video never holds
    more than `read_ahead` + 1 batches of frames (+ 1 with `with_window`: the previous batch, held
    while no window shows) and one of backbone activations. Thread-safe for concurrent `embed` calls as far
    as the encoder runtime is (onnxruntime sessions and eager torch inference both are).
    `checkpoint`, the bundle's fingerprint (model.checkpoint.fingerprint), is stamped on every
    VideoFeatures it makes.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        fps: float = 1.0,
        limits: DecodeLimits | None = None,
        *,
        encoder: FrameEncoder | None = None,
        batch_size: int = 32,
        runtime: str = "auto",
        threads: int | None = None,
        cache_dir: Path | None = None,
        short_side: int = 256,
        fast_decode: bool = True,
        checkpoint: str | None = None,
        read_ahead: int = 2,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.bundle = bundle
        self.fps = fps
        self.limits = limits or DecodeLimits()
        self.short_side = short_side
        self.fast_decode = fast_decode
        self.checkpoint = checkpoint
        if read_ahead < 1:
            raise ValueError(f"read_ahead must be at least 1, got {read_ahead}")
        self.read_ahead = read_ahead
        self.encoder = encoder or bundle.frame_encoder(
            batch_size=batch_size, runtime=runtime, threads=threads, cache_dir=cache_dir
        )
        self.batch_size = self.encoder.batch_size
        self.similarity = bundle.similarity.eval()

    # -- public ----------------------------------------------------------------------------------
    def embed(self, path: str | Path, *, flip: bool = False, max_frames: int | None = None) -> VideoFeatures:
        """Features of one file; `flip=True` embeds its mirror image (a query variant for flipped copies).

        `max_frames` lowers the frame limit for this call (a search clip's budget). Raises
        model.video.VideoDecodeError for anything that is not a usable video.
        """
        result = self.embed_detailed(path, flip=flip, max_frames=max_frames)
        return result.features

    def embed_versions(
        self, path: str | Path, *, max_frames: int | None = None
    ) -> tuple[VideoFeatures, VideoFeatures | None]:
        """Features of a file and of its inner window's crop (None when it has none), from one decode."""
        result = self.embed_detailed(path, with_window=True, max_frames=max_frames)
        return result.features, result.window

    def embed_detailed(
        self,
        path: str | Path,
        *,
        flip: bool = False,
        with_flipped: bool = False,
        with_window: bool = False,
        max_frames: int | None = None,
    ) -> Embedded:
        """`embed` with stage timings; `with_flipped` also embeds the mirror image from the same
        decode, `with_window` the inner window's crop (see the module docstring).

        Timings' `decode` is the decoding thread's own time (it overlaps the encoder's).
        """
        frames = self.frames(path, max_frames=max_frames)
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        mirror_parts: list[tuple[np.ndarray, np.ndarray]] = []
        window_parts: list[tuple[np.ndarray, np.ndarray]] = []
        window_rows: list[np.ndarray] = []
        track = WindowTrack() if with_window else None
        encode_s = index_s = window_s = 0.0
        decode_clock = _Clock()
        for batch in _read_ahead(frames, self.read_ahead, decode_clock):
            source = batch[:, :, ::-1] if flip else batch
            regions, vectors, encode, index = self._encode_and_index(source)
            parts.append((regions, vectors))
            encode_s, index_s = encode_s + encode, index_s + index
            if with_flipped:
                regions, vectors, encode, index = self._encode_and_index(batch[:, :, ::-1])
                mirror_parts.append((regions, vectors))
                encode_s, index_s = encode_s + encode, index_s + index
            if track is not None:
                mark = time.perf_counter()
                crops = track.feed(source)
                window_s += time.perf_counter() - mark
                encode_s, index_s = self._encode_crops(crops, window_parts, window_rows, encode_s, index_s)
        if track is not None:
            encode_s, index_s = self._encode_crops(track.finish(), window_parts, window_rows, encode_s, index_s)
        summary = frames.summary
        features = self._features(summary, parts)
        window = self._features(summary, window_parts, np.concatenate(window_rows)) if window_parts else None
        flipped = self._features(summary, mirror_parts) if with_flipped else None
        timings = EmbedTimings(
            decode=decode_clock.seconds,
            encode=encode_s,
            index=index_s,
            frames=len(summary.timestamps),
            window=window_s,
        )
        return Embedded(
            features=features,
            timings=timings,
            flipped=flipped,
            window=window,
            window_box=track.windows[0].box() if track is not None and track.windows else None,
        )

    def encode_file(self, path: str | Path) -> np.ndarray:
        """The frame encoder's region features [T, R, D] of a file, float16, before the network's
        `index()` step: what the quality benchmark caches so several networks score one encode."""
        encoded = [
            self.encoder.encode(np.ascontiguousarray(batch)).astype(np.float16)
            for batch in _read_ahead(self.frames(path), self.read_ahead, _Clock())
        ]
        return np.concatenate(encoded)

    def frames(self, path: str | Path, *, max_frames: int | None = None) -> VideoFrames:
        """The file's frames in encoder-sized batches, as the service samples them."""
        limits = self.limits if max_frames is None else replace(self.limits, max_frames=max_frames)
        return VideoFrames(
            path,
            fps=self.fps,
            short_side=self.short_side,
            limits=limits,
            fast=self.fast_decode,
            batch_size=self.batch_size,
        )

    def embed_frames(
        self,
        frames: np.ndarray,
        timestamps: np.ndarray,
        *,
        duration: float | None = None,
        source_fps: float | None = None,
    ) -> VideoFeatures:
        """Features of already decoded uint8 RGB frames [T, H, W, 3] sampled at `timestamps`."""
        if len(frames) == 0:
            raise VideoDecodeError("no frames to embed")
        parts = []
        for start in range(0, len(frames), self.batch_size):
            regions, vectors, _, _ = self._encode_and_index(frames[start : start + self.batch_size])
            parts.append((regions, vectors))
        return VideoFeatures(
            regions=np.concatenate([regions for regions, _ in parts]),
            frame_vectors=np.concatenate([vectors for _, vectors in parts]),
            timestamps=timestamps,
            duration=duration,
            fps=self.fps,
            source_fps=source_fps,
            checkpoint=self.checkpoint,
        )

    def embed_many(self, paths: Iterable[str | Path]) -> Iterator[tuple[Path, Embedded | VideoDecodeError]]:
        """Embed files in order: (path, Embedded) or (path, VideoDecodeError) per file, so one bad
        file does not stop the rest; other exceptions propagate."""
        for path in paths:
            try:
                yield Path(path), self.embed_detailed(path)
            except VideoDecodeError as error:
                yield Path(path), error

    # -- stages ----------------------------------------------------------------------------------
    def _features(
        self, summary: DecodeSummary, parts: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray | None = None
    ) -> VideoFeatures:
        """Features of the decode's frames, or of frames `rows` of it (a window's crops)."""
        return VideoFeatures(
            regions=np.concatenate([regions for regions, _ in parts]),
            frame_vectors=np.concatenate([vectors for _, vectors in parts]),
            timestamps=summary.timestamps if rows is None else summary.timestamps[rows],
            duration=summary.duration,
            fps=self.fps,
            source_fps=summary.source_fps,
            frames_expected=summary.frames_expected,
            warnings=summary.warnings,
            checkpoint=self.checkpoint,
        )

    def _encode_crops(
        self,
        crops: list[WindowCrop],
        parts: list[tuple[np.ndarray, np.ndarray]],
        rows: list[np.ndarray],
        encode_s: float,
        index_s: float,
    ) -> tuple[float, float]:
        """Encode window crops onto `parts` and their frame numbers onto `rows`; the stage clocks after."""
        for crop in crops:
            regions, vectors, encode, index = self._encode_and_index(crop.frames)
            parts.append((regions, vectors))
            rows.append(crop.rows)
            encode_s, index_s = encode_s + encode, index_s + index
        return encode_s, index_s

    def _encode_and_index(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        """One batch of uint8 frames [B, H, W, 3] -> (float16 regions [B, R, D], float32 vectors
        [B, D], encode s, index s)."""
        mark = time.perf_counter()
        encoded = self.encoder.encode(np.ascontiguousarray(frames))
        encode_s = time.perf_counter() - mark
        mark = time.perf_counter()
        with torch.inference_mode():
            indexed = self.similarity.index(torch.from_numpy(encoded))
            vectors = frame_vectors(indexed)
        regions = indexed.numpy().astype(np.float16)
        return regions, vectors.numpy().astype(np.float32, copy=False), encode_s, time.perf_counter() - mark


@dataclass
class _Clock:
    """Seconds a producer thread spent making its items."""

    seconds: float = 0.0


def _read_ahead(items: Iterable[np.ndarray], depth: int, clock: _Clock) -> Iterator[np.ndarray]:
    """`items`, made in a producer thread up to `depth` ahead of the consumer; its exceptions are
    re-raised here, and the producer stops when the consumer does."""
    made: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        iterator = iter(items)
        try:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    item: object = next(iterator)
                except StopIteration:
                    break
                finally:
                    clock.seconds += time.perf_counter() - started
                _put(made, item, stop)
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer
            _put(made, _Failed(error), stop)
        finally:
            if isinstance(iterator, Generator):
                iterator.close()  # a consumer that stopped early: the decoder lets go of its file now
            _put(made, done, stop)

    producer = threading.Thread(target=produce, name="embed-decode", daemon=True)
    producer.start()
    try:
        while True:
            entry = made.get()
            if entry is done:
                return
            if isinstance(entry, _Failed):
                raise entry.error
            yield entry
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                made.get_nowait()
            except queue.Empty:
                producer.join(0.05)


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def _put(target: queue.Queue, item: object, stop: threading.Event) -> None:
    """Queue.put that gives up once the consumer has gone away."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
