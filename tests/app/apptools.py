"""Helpers of the service tests: synthetic video files, a light embedder, running apps.

Most service tests exercise HTTP, the catalog, the queue and crash recovery, not the model,
so they run with `light_components`: real decoding (model.video), the real feature store and
FAISS index, but frame features from tiny pixel statistics instead of the CNN, and an exact
Chamfer re-rank. Tests marked with the real model use the shipped checkpoint end to end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from indexer.components import Components, index_overrides, make_probe, milvus_factories
from indexer.settings import Settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

LIGHT_DIM = 48


# -- synthetic media -------------------------------------------------------------------------


def scene(seed: int, frames: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 [T, H, W, 3]: large coloured blocks drifting, distinct for each seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    grid = rng.integers(0, 256, size=(6, 8, 3)).astype(np.float32)
    base = np.kron(grid, np.ones((height // 6 + 1, width // 8 + 1, 1)))[:height, :width]
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        shifted = np.roll(base, shift=(t * 2, t * 3), axis=(0, 1))
        out[t] = np.clip(shifted + rng.normal(0, 4, shifted.shape), 0, 255).astype(np.uint8)
    return out


def write_video(
    path: Path,
    frames: np.ndarray,
    *,
    fps: int = 4,
    codec: str = "mpeg4",
    bitrate: int | None = None,
) -> Path:
    """Encode RGB frames with PyAV (the container follows the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _, height, width, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if bitrate:
            stream.bit_rate = bitrate
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    rate = 16000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = (np.sin(np.linspace(0, 440 * 2 * np.pi * seconds, int(rate * seconds))) * 0.3).astype(np.float32)
        pts = 0
        for start in range(0, len(samples), 1024):
            chunk = samples[start : start + 1024][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@dataclass
class Media:
    """Makes test files under one folder."""

    root: Path
    made: list[Path] = field(default_factory=list)

    def video(
        self, name: str, seed: int, *, seconds: float = 4.0, fps: int = 4, size: tuple[int, int] = (96, 64), **kw
    ) -> Path:
        frames = scene(seed, max(1, int(seconds * fps)), size)
        return write_video(self.root / name, frames, fps=fps, **kw)

    def reencoded(self, name: str, seed: int, **kw) -> Path:
        """A near duplicate of `video(seed)`: other codec settings and a brightness shift."""
        seconds, fps, size = kw.pop("seconds", 4.0), kw.pop("fps", 4), kw.pop("size", (96, 64))
        frames = scene(seed, max(1, int(seconds * fps)), size).astype(np.int16) + 12
        return write_video(
            self.root / name,
            np.clip(frames, 0, 255).astype(np.uint8),
            fps=fps,
            codec="mjpeg" if name.endswith(".avi") else "mpeg4",
            bitrate=200_000,
            **kw,
        )

    def audio_only(self, name: str) -> Path:
        return write_audio_only(self.root / name)

    def raw(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path


# -- light components ------------------------------------------------------------------------


class LightEmbedder:
    """Real decoding, then a frame vector from a 4x4 colour thumbnail (no CNN)."""

    def __init__(self, settings: Settings) -> None:
        from model.checkpoint import fingerprint
        from model.video import DecodeLimits

        self.fps = settings.fps
        self.checkpoint = fingerprint(settings.checkpoint)
        self.limits = DecodeLimits(
            max_frames=settings.max_frames, max_pixels=settings.max_pixels, max_duration_s=settings.max_duration_s
        )
        self.calls = 0

    def embed(self, path, *, max_frames=None):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        from model.features import VideoFeatures
        from model.video import decode_video

        self.calls += 1
        limits = self.limits if max_frames is None else replace(self.limits, max_frames=max_frames)
        video = decode_video(path, fps=self.fps, short_side=16, limits=limits)
        frames = video.frames.astype(np.float32)
        t, h, w, _ = frames.shape
        top, left = (h - 16) // 2, (w - 16) // 2
        crop = frames[:, top : top + 16, left : left + 16]
        thumb = crop.reshape(t, 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(t, LIGHT_DIM)
        thumb -= thumb.mean(axis=1, keepdims=True)
        vectors = thumb / np.maximum(np.linalg.norm(thumb, axis=1, keepdims=True), 1e-6)
        return VideoFeatures(
            regions=vectors[:, None, :],
            frame_vectors=vectors,
            timestamps=video.timestamps,
            duration=video.duration,
            fps=self.fps,
            source_fps=video.source_fps,
            frames_expected=video.frames_expected,
            warnings=video.warnings,
            checkpoint=self.checkpoint,
        )


@dataclass
class LightSegment:
    query_start: float
    query_end: float
    target_start: float
    target_end: float
    score: float | None = None


@dataclass
class LightHit:
    video_id: int
    score: float
    rank: int
    segments: list[LightSegment]
    raw_score: float
    tier: str


class LightSearcher:
    """FAISS candidates, then an exact Chamfer score from the stored features."""

    def __init__(self, store, index) -> None:  # type: ignore[no-untyped-def]
        self.store, self.index = store, index

    def search(self, query, *, k, min_score, candidates, exclude, is_allowed, tiers=None, variants=()):  # type: ignore[no-untyped-def]
        if variants:  # each video keeps its best score over the versions of the query
            found = [
                self.search(
                    v,
                    k=k,
                    min_score=min_score,
                    candidates=candidates,
                    exclude=exclude,
                    is_allowed=is_allowed,
                    tiers=tiers,
                )
                for v in (query, *variants)
            ]
            best = {}
            for hit in (hit for hits in found for hit in hits):
                if hit.video_id not in best or hit.score > best[hit.video_id].score:
                    best[hit.video_id] = hit
            ranked = sorted(best.values(), key=lambda h: -h.score)[:k]
            for rank, hit in enumerate(ranked, 1):
                hit.rank = rank
            return ranked
        _, videos, _ = self.index.search(query.frame_vectors, min(candidates, 64))
        found = [int(v) for v in dict.fromkeys(videos.ravel().tolist()) if v >= 0 and int(v) not in exclude]
        allowed = is_allowed(found)
        hits = []
        for video_id in found:
            if video_id not in allowed:
                continue
            target = self.store.get(video_id)
            sims = query.frame_vectors @ target.frame_vectors.T
            score = float(sims.max(axis=1).mean())
            if min_score is not None and score < min_score:
                continue
            segment = LightSegment(
                float(query.timestamps[0]),
                float(query.timestamps[-1]),
                float(target.timestamps[0]),
                float(target.timestamps[-1]),
            )
            tier = "duplicate" if score >= 0.9 else "none"
            if tiers is not None and tier not in tiers:
                continue
            hits.append(LightHit(video_id, score, 0, [segment], score, tier))
        hits.sort(key=lambda h: -h.score)
        for rank, hit in enumerate(hits[:k], 1):
            hit.rank = rank
        return hits[:k]


def light_components(settings: Settings) -> Components:
    from indexer.feature_store import FeatureStore
    from indexer.vector_index import FaissIndex, IndexConfig, IndexLoadError

    config = IndexConfig(dim=LIGHT_DIM, pq_bytes=16, **index_overrides(settings))

    def load_index(path: Path):  # type: ignore[no-untyped-def]
        try:
            return FaissIndex.load(path, config)
        except IndexLoadError:
            return None

    new_index = lambda: FaissIndex(config)  # noqa: E731
    if settings.vector_index == "milvus":
        new_index, load_index = milvus_factories(settings, LIGHT_DIM)
    store = FeatureStore(settings.features_dir)
    return Components(
        embedder=LightEmbedder(settings),
        store=store,
        new_index=new_index,
        load_index=load_index,
        make_searcher=lambda index: LightSearcher(store, index),
        probe=make_probe(settings),
        description="light test components",
    )


# -- running apps ----------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


class AppClient:
    """A running app (lifespan entered) with helpers for the common calls."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.backend = client.app.state.backend  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Shut down cleanly (lifespan exit), as SIGTERM would."""
        self.client.__exit__(None, None, None)

    def upload(self, path: Path, *, content_type: str = "video/mp4", **fields: str):  # type: ignore[no-untyped-def]
        with open(path, "rb") as handle:
            return self.client.post("/videos", files={"file": (path.name, handle, content_type)}, data=fields)

    def wait_done(self, video_id: int, timeout: float = 60.0) -> dict:
        state: dict = {}

        def done() -> bool:
            state.update(self.client.get(f"/videos/{video_id}").json())
            return state["status"] in ("ready", "failed")

        wait_until(done, timeout)
        return state

    def ingest(self, path: Path, **fields: str) -> dict:
        response = self.upload(path, **fields)
        assert response.status_code in (200, 202), response.text
        return self.wait_done(response.json()["id"])


def assert_consistent(service: AppClient) -> set[int]:
    """Ready in the catalog == stored features == indexed videos, with matching frame counts."""
    from indexer import catalog
    from indexer.db import session_scope

    backend = service.backend
    with session_scope(backend.sessions) as session:
        ready = catalog.ids_with_status(catalog.READY, session=session)
    library = backend.library
    assert set(library.store.ids()) == ready
    index = library._index
    assert set(index.video_ids()) == ready
    for video_id in ready:
        # A video's window frames (indexer.variants) are indexed after its own.
        window = library.store.get_window(video_id)
        extra = 0 if window is None else window.num_frames
        assert index.frames_of(video_id) == library.store.get(video_id).num_frames + extra
    return ready
