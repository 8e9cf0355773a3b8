"""The published score on real clips: self >= 0.99, symmetric, partial copies located, tiers, low-information frames."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np
import pytest

from indexer.search import Reranker
from model.checkpoint import load_default
from model.embedding import VideoEmbedder
from model.features import VideoFeatures
from model.similarity.calibration import shipped_calibration

FPS = 15


@pytest.fixture(scope="module")
def embedder() -> VideoEmbedder:
    return VideoEmbedder(load_default(), fps=1.0)


@pytest.fixture(scope="module")
def reranker(embedder: VideoEmbedder) -> Reranker:
    return Reranker(embedder.bundle.similarity)


def read_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def write_frames(path: Path, frames: Sequence[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def fitted(frames: list[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    """Frames cropped or padded (black) to `shape`, so clips of other sizes can be joined."""
    out = []
    for image in frames:
        canvas = np.zeros(shape, np.uint8)
        h, w = min(shape[0], image.shape[0]), min(shape[1], image.shape[1])
        canvas[:h, :w] = image[:h, :w]
        out.append(canvas)
    return out


def title_card(shape: tuple[int, ...]) -> np.ndarray:
    """A static card: light blocks like a line of text on a dark blue ground."""
    card = np.zeros(shape, np.uint8)
    card[:] = (20, 30, 90)
    middle = shape[0] // 2
    for k in range(6):
        x = shape[1] // 8 + k * shape[1] // 8
        card[middle - 10 : middle + 10, x : x + shape[1] // 12] = 235
    return card


def test_every_real_clip_scores_at_least_099_against_itself(
    embedder: VideoEmbedder, reranker: Reranker, source_clips: list[Path]
) -> None:
    for clip in source_clips:
        features = embedder.embed(clip)
        hit = reranker.compare(features, features)
        assert hit.score >= 0.99, clip.name
        assert hit.tier == "duplicate", clip.name
        assert all(s.query_end <= features.duration and s.target_end <= features.duration for s in hit.segments)


@pytest.mark.parametrize("kind", ["crop", "subclip", "speed", "splice"])
def test_the_score_does_not_depend_on_which_video_is_the_query(
    kind: str, embedder: VideoEmbedder, reranker: Reranker, source_clips: list[Path], edited_copy: Callable[..., Path]
) -> None:
    for clip in source_clips[:4]:
        original, copy = embedder.embed(clip), embedder.embed(edited_copy(kind, clip))
        forward, backward = reranker.compare(copy, original), reranker.compare(original, copy)
        assert abs(forward.score - backward.score) <= 0.01, clip.name
        assert forward.tier == backward.tier
        swapped = sorted((s.target_start, s.target_end, s.query_start, s.query_end) for s in backward.segments)
        ranges = sorted((s.query_start, s.query_end, s.target_start, s.target_end) for s in forward.segments)
        assert len(ranges) == len(swapped), clip.name
        assert np.allclose(ranges, swapped, atol=1.01), clip.name


def test_an_excerpt_inside_a_long_video_is_found_at_its_place(
    embedder: VideoEmbedder, reranker: Reranker, source_clips: list[Path], tmp_path: Path
) -> None:
    """Three unrelated clips end to end; the middle one, searched alone, maps onto its own stretch."""
    excerpt = source_clips[1]
    parts = [read_frames(clip) for clip in (source_clips[0], excerpt, source_clips[2])]
    shape = parts[1][0].shape
    joined = [image for part in parts for image in fitted(part, shape)]
    long_video = embedder.embed(write_frames(tmp_path / "long.mp4", joined))
    start, end = len(parts[0]) / FPS, (len(parts[0]) + len(parts[1])) / FPS
    query = embedder.embed(write_frames(tmp_path / "excerpt.mp4", fitted(parts[1], shape)))

    hit = reranker.compare(query, long_video)
    assert len(hit.segments) == 1, hit.segments
    (segment,) = hit.segments
    assert segment.target_start == pytest.approx(start, abs=1.0)
    assert segment.target_end == pytest.approx(end, abs=1.0)
    assert segment.query_start == pytest.approx(0.0, abs=1.0)
    assert segment.query_end == pytest.approx(query.duration, abs=1.0)
    assert segment.query_end <= query.duration and segment.target_end <= long_video.duration
    assert hit.tier == "duplicate" and hit.score >= shipped_calibration().partial


def test_edited_copies_land_in_copy_tiers_and_unrelated_clips_in_none(
    embedder: VideoEmbedder, reranker: Reranker, source_clips: list[Path], edited_copy: Callable[..., Path]
) -> None:
    clips = source_clips[:4]
    originals = [embedder.embed(clip) for clip in clips]
    tiers = []
    for kind in ("crop", "subclip", "splice", "reencode"):
        for clip, original in zip(clips, originals):
            hit = reranker.compare(embedder.embed(edited_copy(kind, clip)), original)
            tiers.append((kind, clip.name, hit.tier))
    # Every copy is at least related; most are called copies (harsh re-encodes, crf 38 to 44
    # at 144 px, and some crops fall below the copy threshold, chosen for 90% precision).
    assert all(tier != "none" for _, _, tier in tiers), tiers
    assert sum(tier in ("duplicate", "partial") for _, _, tier in tiers) >= len(tiers) // 2, tiers
    assert all(tier == "duplicate" for kind, _, tier in tiers if kind == "subclip"), tiers
    unrelated = [reranker.compare(a, b) for i, a in enumerate(originals) for b in originals[i + 1 :]]
    assert all(hit.tier not in ("duplicate", "partial") for hit in unrelated), unrelated
    assert float(np.median([hit.score for hit in unrelated])) < 0.1, unrelated


def test_a_shared_black_fade_and_title_card_do_not_make_unrelated_clips_match(
    embedder: VideoEmbedder, reranker: Reranker, source_clips: list[Path], tmp_path: Path
) -> None:
    first, second = read_frames(source_clips[0]), read_frames(source_clips[3])
    shape = first[0].shape
    black = [np.zeros(shape, np.uint8)] * (3 * FPS)
    card = [title_card(shape)] * (3 * FPS)
    a = embedder.embed(write_frames(tmp_path / "a.mp4", first + black + card))
    b = embedder.embed(write_frames(tmp_path / "b.mp4", black + card + fitted(second, shape)))
    assert reranker.compare(a, a).score >= 0.99
    hit = reranker.compare(a, b)
    assert hit.tier not in ("duplicate", "partial") and hit.score < 0.3, hit
    assert not hit.segments  # no range for the shared fade and card
    # The same footage with the shared fade still is a copy.
    assert reranker.compare(a, embedder.embed(write_frames(tmp_path / "a2.mp4", first + black + card))).score >= 0.9


def test_stored_weights_are_used_and_old_features_get_them_computed() -> None:
    rng = np.random.default_rng(0)
    regions = rng.normal(size=(6, 9, 16)).astype(np.float32)
    regions[2:5] = regions[2]  # a held frame
    vectors = np.ones((6, 16), np.float32) / 4
    old = VideoFeatures(regions=regions, frame_vectors=vectors, timestamps=np.arange(6.0))
    assert old.weights[3] < 0.1 and old.weights[0] == 1.0
    stored = VideoFeatures(
        regions=regions, frame_vectors=vectors, timestamps=np.arange(6.0), frame_weights=np.full(6, 0.5)
    )
    assert np.all(stored.weights == 0.5)
