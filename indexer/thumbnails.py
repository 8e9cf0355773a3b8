"""Still pictures of stored videos for the web UI: a poster frame and a strip of frames.

Both come from one decode of the stored upload through the service's own decoder (rotation and
aspect ratio honoured, the same limits), are cached as JPEG under the data directory, keyed by
the upload's sha256 (the same bytes give the same pictures, whoever uploaded them), and written
atomically so a reader never sees half a file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from model.fileio import write_bytes_atomic

# Frames in a strip (spread evenly over the video) and the pictures' short sides in pixels.
STRIP_FRAMES = 10
POSTER_SHORT_SIDE = 180
STRIP_HEIGHT = 72
# The poster is the strip frame a third of the way in: first frames are often black or a title card.
POSTER_AT = 1 / 3


class Thumbnails:
    def __init__(self, root: Path) -> None:
        self.root = root

    def poster(self, sha256: str, video: Path, duration: float | None) -> Path:
        """The poster frame's JPEG, made on first use; raises model.video.VideoDecodeError."""
        path = self.root / f"{sha256}.jpg"
        if not path.is_file():
            self._make(sha256, video, duration)
        return path

    def strip(self, sha256: str, video: Path, duration: float | None) -> Path:
        """STRIP_FRAMES frames side by side, evenly spread in time."""
        path = self.root / f"{sha256}-strip.jpg"
        if not path.is_file():
            self._make(sha256, video, duration)
        return path

    def _make(self, sha256: str, video: Path, duration: float | None) -> None:
        from PIL import Image

        from model.video import decode_video

        fps = STRIP_FRAMES / duration if duration and duration > 0 else 1.0
        decoded = decode_video(video, fps=fps, short_side=POSTER_SHORT_SIDE)
        frames = decoded.frames[:STRIP_FRAMES]
        self.root.mkdir(parents=True, exist_ok=True)
        poster = Image.fromarray(frames[min(len(frames) - 1, int(len(frames) * POSTER_AT))])
        write_bytes_atomic(self.root / f"{sha256}.jpg", _jpeg(poster))
        tiles = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
        tile_width = max(1, round(tiles[0].width * STRIP_HEIGHT / tiles[0].height))
        strip = Image.new("RGB", (tile_width * len(tiles), STRIP_HEIGHT))
        for number, tile in enumerate(tiles):
            strip.paste(tile.resize((tile_width, STRIP_HEIGHT)), (number * tile_width, 0))
        write_bytes_atomic(self.root / f"{sha256}-strip.jpg", _jpeg(strip))

    def remove(self, sha256: str) -> None:
        for path in (self.root / f"{sha256}.jpg", self.root / f"{sha256}-strip.jpg"):
            path.unlink(missing_ok=True)


def _jpeg(image: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)  # type: ignore[attr-defined]
    return buffer.getvalue()
