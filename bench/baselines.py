"""Peer tools a user would pick instead of hapvr-search, scored on the same benchmark.

Each baseline turns a video into a signature and scores every pair of signatures with a
fixed function of the two videos alone, so scores are comparable across queries (needed
for µAP). A baseline whose package (or the program it calls) is missing reports why in
`unavailable()` and is listed as skipped, never silently dropped.

| name        | package                     | signature                                  | pair score |
|-------------|-----------------------------|--------------------------------------------|------------|
| frame-phash | imagehash (needs Pillow)    | 64-bit DCT perceptual hash per frame, 1 fps | symmetric Chamfer of 1 - Hamming/64 over frames |
| vpdq        | vpdq (Meta's video PDQ)     | 256-bit PDQ hash per second, with quality  | vPDQ's own match: mean of the query- and target-side fractions of frames with a partner within Hamming 31 (quality >= 50); ties broken by the mean nearest-frame similarity |
| videohash   | videohash 3.0.1 (calls `ffmpeg`; given Pillow 10's name for LANCZOS) | one 64-bit hash of a frame collage          | 1 - Hamming/64 |

vpdq ships only an sdist that builds against FFmpeg's development libraries (on Debian:
libavcodec-dev libavformat-dev libavdevice-dev libavfilter-dev libswscale-dev
libswresample-dev libavutil-dev and pkg-config); videohash runs the `ffmpeg` program.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# vPDQ's reference matcher (ThreatExchange vpdq/python): frames below this quality are
# ignored, and two frames match within this Hamming distance (of 256 bits).
VPDQ_QUALITY = 50
VPDQ_DISTANCE = 31


@dataclass(frozen=True)
class Baseline:
    """A peer method: per-video signature, then all-pairs scores (row = query)."""

    name: str
    description: str
    unavailable: Callable[[], str | None]  # None when it can run, else why not
    signature: Callable[[Path], np.ndarray]
    score_all: Callable[[Sequence[np.ndarray]], np.ndarray]  # signatures -> [N, N]


# ---------------------------------------------------------------------------------------
# Scoring helpers over bit signatures


def _signs(bits: np.ndarray) -> np.ndarray:
    """bool [..., B] -> float32 +-1, so a dot product gives B - 2 * Hamming."""
    return np.where(bits, 1.0, -1.0).astype(np.float32)


def bit_similarity(bits: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All frames of all videos stacked: (1 - Hamming / B) [F, F], and each video's first row."""
    stacked = np.concatenate([np.asarray(b, dtype=bool).reshape(-1, b.shape[-1]) for b in bits])
    signs = _signs(stacked)
    width = stacked.shape[1]
    similarity = (signs @ signs.T + width) / (2 * width)
    starts = np.cumsum([0] + [len(b) for b in bits])[:-1]
    return similarity, starts


def chamfer_all_pairs(similarity: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[N, N]: mean over the row video's frames of the best frame of the column video."""
    best = np.maximum.reduceat(similarity, starts, axis=1)  # [F, N]
    return np.add.reduceat(best, starts, axis=0) / counts[:, None]


def _require(module: str, package: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"PyPI package {package} is not installed"
    return None


# ---------------------------------------------------------------------------------------
# Per-frame perceptual hash


def phash_signature(path: Path, fps: float = 1.0) -> np.ndarray:
    """bool [T, 64]: imagehash.phash of each frame sampled at `fps`."""
    import imagehash
    from PIL import Image

    from model.video import decode_video

    video = decode_video(path, fps=fps, short_side=128)
    return np.stack([imagehash.phash(Image.fromarray(f)).hash.ravel() for f in video.frames])


def phash_scores(signatures: Sequence[np.ndarray]) -> np.ndarray:
    similarity, starts = bit_similarity(signatures)
    counts = np.array([len(s) for s in signatures], dtype=np.float64)
    one_way = chamfer_all_pairs(similarity, starts, counts)
    return (one_way + one_way.T) / 2


# ---------------------------------------------------------------------------------------
# vPDQ


def vpdq_signature(path: Path) -> np.ndarray:
    """bool [T, 256] of the distinct good-quality PDQ hashes, one frame per second.

    Like vPDQ's reference matcher: frames under quality 50 are dropped (all of them are kept
    when none passes, so a dark clip still has a signature) and repeated hashes counted once.
    """
    import vpdq

    features = vpdq.computeHash(str(path), seconds_per_hash=1.0)
    if not features:
        raise ValueError(f"vpdq hashed no frame of {path.name}")
    good = [f for f in features if f.quality >= VPDQ_QUALITY] or list(features)
    hexes = list(dict.fromkeys(f.hex for f in good))
    bits = np.unpackbits(np.frombuffer(b"".join(bytes.fromhex(h) for h in hexes), np.uint8))
    return bits.reshape(len(hexes), 256).astype(bool)


def vpdq_scores(signatures: Sequence[np.ndarray]) -> np.ndarray:
    similarity, starts = bit_similarity(signatures)
    counts = np.array([len(s) for s in signatures], dtype=np.float64)
    within = (similarity >= 1 - VPDQ_DISTANCE / 256).astype(np.float64)
    # Fraction of the row video's frames with a partner in the column video.
    matched = np.add.reduceat(np.maximum.reduceat(within, starts, axis=1), starts, axis=0) / counts[:, None]
    nearest = chamfer_all_pairs(similarity, starts, counts)
    return (matched + matched.T) / 2 + 1e-3 * (nearest + nearest.T) / 2


# ---------------------------------------------------------------------------------------
# videohash


def videohash_unavailable() -> str | None:
    missing = _require("videohash", "videohash")
    if missing:
        return missing
    if shutil.which("ffmpeg") is None:
        return "videohash runs the ffmpeg program, which is not on PATH (Debian: apt-get install ffmpeg)"
    return None


def videohash_signature(path: Path) -> np.ndarray:
    """bool [1, 64]: videohash's one hash of the whole video (1 frame per second)."""
    from PIL import Image
    from videohash import VideoHash

    if not hasattr(Image, "ANTIALIAS"):
        # videohash 3.0.1 still names the filter Pillow 10 renamed; it is the same LANCZOS.
        Image.ANTIALIAS = Image.Resampling.LANCZOS
    with tempfile.TemporaryDirectory(prefix="hapvr-videohash-") as tmp:
        value = VideoHash(path=str(Path(path).resolve()), storage_path=tmp + "/", frame_interval=1)
        bits = np.array([c == "1" for c in value.hash.removeprefix("0b")], dtype=bool)
    if bits.size != 64:
        raise ValueError(f"videohash gave {bits.size} bits for {path.name}")
    return bits[None]


def videohash_scores(signatures: Sequence[np.ndarray]) -> np.ndarray:
    similarity, _ = bit_similarity(signatures)
    return similarity


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline(
            "frame-phash",
            "imagehash pHash per frame at 1 fps, symmetric Chamfer",
            lambda: _require("imagehash", "imagehash"),
            phash_signature,
            phash_scores,
        ),
        Baseline(
            "vpdq",
            "vPDQ (PDQ per second), match fractions at Hamming <= 31",
            lambda: _require("vpdq", "vpdq"),
            vpdq_signature,
            vpdq_scores,
        ),
        Baseline(
            "videohash",
            "videohash: one 64-bit hash per video",
            videohash_unavailable,
            videohash_signature,
            videohash_scores,
        ),
    )
}
