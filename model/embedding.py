"""A video file to the features the indexer stores: the ingest hot path.

decode (model.video, 1 fps, short side 256) -> frame encoder (backbone, regional pooling, PCA;
batched) -> the similarity network's `index()` (attention) -> region features in float16 and one
unit vector per frame for FAISS (model.similarity.network.frame_vectors).

Overlap. `decode_video` hands back a whole video, so decoding and encoding of one video cannot
overlap; `embed_many` overlaps them across videos instead: a producer thread decodes the next
file while the encoder works on the current one (PyAV and onnxruntime both release the GIL).
Measured on this 2-core box (shared, load 6-8) with four 60 s 640x360 H.264 clips at 1 fps:
one after another 38-42x real time (decode 2.4 s, encode 3.7 s per 240 s of video), with
`embed_many` 44-45x, with two threads each embedding whole files (what two service workers do)
50x. Overlap inside one video would need a streaming decoder.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from model.features import VideoFeatures
from model.similarity.network import frame_vectors
from model.video import DecodedVideo, DecodeLimits, VideoDecodeError, decode_video

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

    @property
    def total(self) -> float:
        return self.decode + self.encode + self.index


@dataclass
class Embedded:
    """One embedded file: its features (or flipped variant too) and where the time went."""

    features: VideoFeatures
    timings: EmbedTimings
    flipped: VideoFeatures | None = None


class VideoEmbedder:
    """Embeds video files with one model; build once per process (the encoder warms up once).

    `encode` and `index` run batch_size frames at a time, so a long video never holds more
    than one batch of backbone activations. Thread-safe for concurrent `embed` calls as far
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
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.bundle = bundle
        self.fps = fps
        self.limits = limits or DecodeLimits()
        self.short_side = short_side
        self.fast_decode = fast_decode
        self.checkpoint = checkpoint
        self.encoder = encoder or bundle.frame_encoder(
            batch_size=batch_size, runtime=runtime, threads=threads, cache_dir=cache_dir
        )
        self.batch_size = self.encoder.batch_size
        self.similarity = bundle.similarity.eval()

    # -- public ----------------------------------------------------------------------------------
    def embed(self, path: str | Path, *, flip: bool = False) -> VideoFeatures:
        """Features of one file; `flip=True` embeds its mirror image (a query variant for flipped copies).

        Raises model.video.VideoDecodeError for anything that is not a usable video.
        """
        result = self.embed_detailed(path, flip=flip)
        return result.features

    def embed_detailed(self, path: str | Path, *, flip: bool = False, with_flipped: bool = False) -> Embedded:
        """`embed` with stage timings; `with_flipped` also embeds the mirror image from the same decode."""
        started = time.perf_counter()
        video = self.decode(path)
        decoded = time.perf_counter() - started
        return self._embed_decoded(video, decoded, flip=flip, with_flipped=with_flipped)

    def encode_file(self, path: str | Path) -> np.ndarray:
        """The frame encoder's region features [T, R, D] of a file, float16, before the network's
        `index()` step: what the quality benchmark caches so several networks score one encode."""
        frames = self.decode(path).frames
        if len(frames) == 0:
            raise VideoDecodeError("no frames to embed")
        return np.concatenate(
            [
                self.encoder.encode(np.ascontiguousarray(frames[start : start + self.batch_size])).astype(np.float16)
                for start in range(0, len(frames), self.batch_size)
            ]
        )

    def decode(self, path: str | Path) -> DecodedVideo:
        return decode_video(path, fps=self.fps, short_side=self.short_side, limits=self.limits, fast=self.fast_decode)

    def embed_frames(
        self,
        frames: np.ndarray,
        timestamps: np.ndarray,
        *,
        duration: float | None = None,
        source_fps: float | None = None,
    ) -> VideoFeatures:
        """Features of already decoded uint8 RGB frames [T, H, W, 3] sampled at `timestamps`."""
        regions, vectors, _, _ = self._encode_and_index(frames)
        return VideoFeatures(
            regions=regions,
            frame_vectors=vectors,
            timestamps=timestamps,
            duration=duration,
            fps=self.fps,
            source_fps=source_fps,
            checkpoint=self.checkpoint,
        )

    def embed_many(
        self, paths: Iterable[str | Path], *, prefetch: int = 1
    ) -> Iterator[tuple[Path, Embedded | VideoDecodeError]]:
        """Embed files in order, decoding up to `prefetch` files ahead in a producer thread.

        Yields (path, Embedded) or (path, VideoDecodeError) per file, so one bad file does not
        stop the rest; other exceptions propagate. Timings' `decode` is the producer's time.
        """
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        decoded: queue.Queue = queue.Queue(maxsize=prefetch)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for path in paths:
                    if stop.is_set():
                        return
                    started = time.perf_counter()
                    try:
                        item: object = self.decode(path)
                    except VideoDecodeError as error:
                        item = error
                    _put(decoded, (Path(path), item, time.perf_counter() - started), stop)
            except BaseException as error:  # noqa: BLE001 - re-raised in the consumer
                _put(decoded, (None, error, 0.0), stop)
            finally:
                _put(decoded, done, stop)

        producer = threading.Thread(target=produce, name="embed-decode", daemon=True)
        producer.start()
        try:
            while True:
                entry = decoded.get()
                if entry is done:
                    return
                path, item, decode_seconds = entry
                if path is None:
                    raise item
                if isinstance(item, VideoDecodeError):
                    yield path, item
                else:
                    yield path, self._embed_decoded(item, decode_seconds)
        finally:
            stop.set()
            while producer.is_alive():  # unblock a producer waiting on a full queue
                try:
                    decoded.get_nowait()
                except queue.Empty:
                    producer.join(0.05)

    # -- stages ----------------------------------------------------------------------------------
    def _embed_decoded(
        self, video: DecodedVideo, decode_seconds: float, *, flip: bool = False, with_flipped: bool = False
    ) -> Embedded:
        frames = video.frames[:, :, ::-1] if flip else video.frames
        regions, vectors, encode_s, index_s = self._encode_and_index(frames)
        features = self._features(video, regions, vectors)
        flipped = None
        if with_flipped:
            mirror_regions, mirror_vectors, mirror_encode, mirror_index = self._encode_and_index(
                video.frames[:, :, ::-1]
            )
            encode_s, index_s = encode_s + mirror_encode, index_s + mirror_index
            flipped = self._features(video, mirror_regions, mirror_vectors)
        timings = EmbedTimings(decode=decode_seconds, encode=encode_s, index=index_s, frames=len(video.frames))
        return Embedded(features=features, timings=timings, flipped=flipped)

    def _features(self, video: DecodedVideo, regions: np.ndarray, vectors: np.ndarray) -> VideoFeatures:
        return VideoFeatures(
            regions=regions,
            frame_vectors=vectors,
            timestamps=video.timestamps,
            duration=video.duration,
            fps=self.fps,
            source_fps=video.source_fps,
            frames_expected=video.frames_expected,
            warnings=video.warnings,
            checkpoint=self.checkpoint,
        )

    def _encode_and_index(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        """uint8 frames [T, H, W, 3] -> (float16 regions [T, R, D], float32 vectors [T, D], encode s, index s)."""
        count = len(frames)
        if count == 0:
            raise VideoDecodeError("no frames to embed")
        regions: np.ndarray | None = None
        vectors: np.ndarray | None = None
        encode_s = index_s = 0.0
        for start in range(0, count, self.batch_size):
            mark = time.perf_counter()
            encoded = self.encoder.encode(np.ascontiguousarray(frames[start : start + self.batch_size]))
            encode_s += time.perf_counter() - mark
            mark = time.perf_counter()
            with torch.inference_mode():
                indexed = self.similarity.index(torch.from_numpy(encoded))
                batch_vectors = frame_vectors(indexed)
            if regions is None or vectors is None:
                regions = np.empty((count, *indexed.shape[1:]), dtype=np.float16)
                vectors = np.empty((count, batch_vectors.shape[1]), dtype=np.float32)
            regions[start : start + len(encoded)] = indexed.numpy()
            vectors[start : start + len(encoded)] = batch_vectors.numpy()
            index_s += time.perf_counter() - mark
        assert regions is not None and vectors is not None
        return regions, vectors, encode_s, index_s


def _put(target: queue.Queue, item: object, stop: threading.Event) -> None:
    """Queue.put that gives up once the consumer has gone away."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
