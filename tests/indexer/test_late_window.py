"""A picture-in-picture that appears only after the first batch (32 s at 1 fps): found in the same
single decode, cropped from where it appears on, on the video's own time axis, and searched from
both sides. Real footage, real decoder, the shipped model."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from bench.edits import Clip, fit, read_clip, resize, write_clip
from indexer.feature_store import FeatureStore
from indexer.search import SearchEngine
from indexer.variants import indexed_vectors, store_versions
from indexer.vector_index import FaissIndex, IndexConfig
from model.checkpoint import load_default
from model.embedding import VideoEmbedder
from model.features import VideoFeatures
from model.video import VideoFrames
from model.window_track import WindowTrack

WIDTH, HEIGHT, FPS = 256, 144, 2  # small and slow, so the 56 s videos are quick to write and decode
APPEARS, LENGTH = 36.0, 56.0
BOX = (24, 16, 116, 66)  # x, y, width, height of the pasted clip (45 % of the frame)


def _like(seconds: float) -> Clip:
    return Clip(np.zeros((round(seconds * FPS), HEIGHT, WIDTH, 3), np.uint8), Fraction(FPS))


def _full_frame(clips: list[Path], seconds: float) -> np.ndarray:
    """The clips one after another, whole-frame, cut to `seconds`."""
    parts: list[np.ndarray] = []
    while sum(len(part) for part in parts) < seconds * FPS:
        for path in clips:
            clip = read_clip(path)
            parts.append(fit(clip, _like(clip.duration)))
    return np.concatenate(parts)[: round(seconds * FPS)]


def _late_pip(
    out: Path, inner: Path, background: Path, before: list[Path], start: float = APPEARS, end: float = LENGTH
) -> Path:
    """Full-frame footage but for [start, end), where `inner` (looped) is boxed over `background`."""
    frames = _full_frame(before, LENGTH)
    boxed = fit(read_clip(background), _like(end - start)).copy()
    x, y, w, h = BOX
    boxed[:, y : y + h, x : x + w] = resize(fit(read_clip(inner), _like(end - start)), w, h)
    frames[round(start * FPS) : round(end * FPS)] = boxed
    return write_clip(Clip(frames, Fraction(FPS)), out)


@pytest.fixture(scope="module")
def embedder() -> VideoEmbedder:
    return VideoEmbedder(load_default(), fps=1.0)


@pytest.fixture(scope="module")
def videos(source_clips: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("late-window")
    # A background whose own edges do not cross the box (the detector's sensitivity is tested in
    # tests/model/test_inner_window.py; here it is where and when a window is followed).
    inner, background, before = source_clips[0], source_clips[9], source_clips[3:7]
    return {
        "inner": inner,
        "pip": _late_pip(root / "late-pip.mp4", inner, background, before),
        "plain": write_clip(Clip(_full_frame(source_clips[2:9], LENGTH), Fraction(FPS)), root / "plain.mp4"),
    }


def test_window_appearing_after_the_first_batch_is_cropped_from_where_it_appears(
    embedder: VideoEmbedder, videos: dict[str, Path]
) -> None:
    result = embedder.embed_detailed(videos["pip"], with_window=True)
    features, window = result.features, result.window
    assert features.num_frames == LENGTH and window is not None and result.window_box is not None
    # The crop's frames are the video's own, from where the picture appears to the end.
    assert APPEARS - 1 <= window.timestamps[0] <= APPEARS + 1, window.timestamps
    assert window.timestamps[-1] == features.timestamps[-1]
    assert np.isin(window.timestamps, features.timestamps).all()
    assert window.duration == features.duration
    # The box, in decoded pixels (256 px short side: 144 px scaled by 16 / 9).
    x, y, w, h = (round(v * 256 / HEIGHT) for v in BOX)
    found_x, found_y, found_w, found_h = result.window_box
    assert abs(found_x - x) <= 6 and abs(found_y - y) <= 6
    assert abs(found_w - w) <= 8 and abs(found_h - h) <= 8


def test_window_shown_for_24_s_across_two_batches_is_cropped_where_it_shows(
    source_clips: list[Path], tmp_path: Path
) -> None:
    """Neither batch holds most of it; the search over 16-frame spans finds it."""
    path = _late_pip(tmp_path / "middle.mp4", source_clips[0], source_clips[9], source_clips[3:7], start=20, end=44)
    track = WindowTrack()
    crops = [crop for batch in VideoFrames(path, fps=1.0, short_side=256, batch_size=32) for crop in track.feed(batch)]
    rows = np.concatenate([crop.rows for crop in [*crops, *track.finish()]])
    assert len(track.windows) == 1
    assert abs(rows[0] - 20) <= 1 and abs(rows[-1] - 43) <= 1 and len(rows) == rows[-1] - rows[0] + 1


def test_long_unedited_footage_gets_no_window(embedder: VideoEmbedder, videos: dict[str, Path]) -> None:
    features, window = embedder.embed_versions(videos["plain"])
    assert window is None and features.num_frames == LENGTH


def _engine(embedder: VideoEmbedder, root: Path, indexed: dict[int, Path]) -> SearchEngine:
    store = FeatureStore(root)
    index = FaissIndex(IndexConfig(dim=embedder.bundle.pca.dim))
    for video_id, path in indexed.items():
        features, window = embedder.embed_versions(path)
        store_versions(store, video_id, features, window)
        index.add(video_id, indexed_vectors(store, video_id))
    return SearchEngine(store, index, embedder.bundle.similarity)


def _versions(embedder: VideoEmbedder, path: Path) -> tuple[VideoFeatures, list[VideoFeatures]]:
    features, window = embedder.embed_versions(path)
    return features, [window] if window is not None else []


def test_late_window_found_from_both_sides(
    embedder: VideoEmbedder, videos: dict[str, Path], source_clips: list[Path], tmp_path: Path
) -> None:
    others = {10 + number: source_clips[number] for number in (2, 7, 8)}  # unrelated to both
    # The inner clip alone finds the video it appears in late, at the time it appears there.
    engine = _engine(embedder, tmp_path / "pip-indexed", {1: videos["pip"], **others})
    query, variants = _versions(embedder, videos["inner"])
    hits = engine.search(query, k=3, variants=variants)
    assert hits and hits[0].video_id == 1, hits
    assert hits[0].segments and hits[0].segments[0].target_start >= APPEARS - 1, hits[0].segments
    # The other side: the video with the late window finds the clip shown in it.
    engine = _engine(embedder, tmp_path / "inner-indexed", {2: videos["inner"], **others})
    query, variants = _versions(embedder, videos["pip"])
    assert variants  # its window is searched as another version of the query
    hits = engine.search(query, k=3, variants=variants)
    assert hits and hits[0].video_id == 2, hits
    assert hits[0].segments and hits[0].segments[0].query_start >= APPEARS - 1, hits[0].segments
