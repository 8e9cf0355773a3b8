"""Training data: unlabeled videos from a folder or a manifest, decoded once into a frame cache.

Decoding is the slow part of reading video, and a run visits every clip many times, so frames
are decoded once at the training rate (1 fps) and kept as uint8 .npy files keyed by the file's
path, size, modification time and the decode settings. Later runs (and later steps) only
memory-map them. Files that do not decode are skipped with a warning and remembered in the
cache, so a damaged file costs one attempt, not one per run.

Long videos are cut into clips of `segment_seconds`; each clip is its own identity in the
self-supervised task, which also makes other stretches of the same recording hard negatives.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.fileio import atomic_write, write_text_atomic
from model.video import VIDEO_SUFFIXES, find_videos

logger = logging.getLogger("hapvr.train")

MANIFEST_EXTENSIONS = frozenset({".txt", ".csv", ".json", ".list"})


class DataError(ValueError):
    """Training data that cannot be used; the message is one line naming the path."""


# ----------------------------------------------------------------------------------------------
# Finding the videos


def list_videos(source: str | Path) -> list[Path]:
    """Every video named by `source`: a folder (searched recursively) or a manifest file.

    Manifests: .txt/.list (one path per line, '#' comments), .csv (a `path` column) or .json
    (a list of paths, or {"videos": [...]}); relative paths are taken from the manifest's folder.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"training data not found: {source} (expected a folder of videos or a manifest file)")
    if source.is_dir():
        videos = find_videos(source)
        if not videos:
            raise DataError(
                f"no videos in {source} (looked for {', '.join(sorted(VIDEO_SUFFIXES))}, in subfolders too)"
            )
        return videos
    if source.suffix.lower() in VIDEO_SUFFIXES:
        raise DataError(f"{source} is a single video; give a folder of videos or a manifest listing them")
    entries = _read_manifest(source)
    videos = []
    missing: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if not path.is_absolute():
            path = source.parent / path
        (videos if path.is_file() else missing).append(path)
    for path in missing:
        logger.warning("manifest %s: skipping missing file %s", source, path)
    if not videos:
        raise DataError(f"manifest {source} names no existing video files")
    return videos


def _read_manifest(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read manifest {path}: {error}") from None
    if suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"manifest {path} is not valid JSON: {error}") from None
        if isinstance(values, dict):
            values = values.get("videos")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataError(f'manifest {path} must be a JSON list of paths or {{"videos": [paths]}}')
        return values
    if suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "path" not in rows[0]:
            raise DataError(f"manifest {path} must be a CSV with a 'path' column")
        return [row["path"] for row in rows if row.get("path")]
    lines = [line.strip() for line in text.splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    if not entries:
        raise DataError(f"manifest {path} lists no videos")
    return entries


def data_fingerprint(videos: list[Path]) -> str:
    """sha256 over the sorted (name, size) of every video: names the data a checkpoint saw."""
    digest = hashlib.sha256()
    for path in sorted(videos, key=lambda p: str(p)):
        digest.update(f"{path.name}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# The frame cache


@dataclass
class CachedFrames:
    frames: np.ndarray  # uint8 [T, H, W, 3], memory-mapped
    timestamps: np.ndarray  # float64 [T]


class FrameCache:
    """Decoded frames on disk, one .npy per (file, decode settings)."""

    def __init__(self, root: str | Path, fps: float = 1.0, short_side: int = 256, max_frames: int = 7200) -> None:
        self.root = Path(root)
        self.fps = fps
        self.short_side = short_side
        self.max_frames = max_frames
        self.root.mkdir(parents=True, exist_ok=True)

    def key(self, path: Path) -> str:
        stat = path.stat()
        ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.fps}|{self.short_side}|{self.max_frames}"
        return hashlib.sha1(ident.encode()).hexdigest()

    def get(self, path: str | Path) -> CachedFrames:
        """Frames of `path`, decoding on first use; raises model.video.VideoDecodeError if it does not decode."""
        from model.video import DecodeLimits, VideoDecodeError, decode_video

        path = Path(path)
        key = self.key(path)
        frames_file = self.root / f"{key}.npy"
        times_file = self.root / f"{key}.times.npy"
        error_file = self.root / f"{key}.error"
        if error_file.is_file():
            raise VideoDecodeError(error_file.read_text().strip() or "did not decode")
        if not (frames_file.is_file() and times_file.is_file()):
            try:
                video = decode_video(
                    path, fps=self.fps, short_side=self.short_side, limits=DecodeLimits(max_frames=self.max_frames)
                )
            except VideoDecodeError as error:
                write_text_atomic(error_file, str(error))
                raise
            atomic_write(times_file, lambda f: np.save(f, video.timestamps))
            atomic_write(frames_file, lambda f: np.save(f, video.frames))
        return CachedFrames(np.load(frames_file, mmap_mode="r"), np.load(times_file))


# ----------------------------------------------------------------------------------------------
# Clips


@dataclass(frozen=True)
class Clip:
    """A stretch [start, stop) of one video's cached frames; the unit of identity in training."""

    index: int
    video: Path
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"{self.video.name}[{self.start}:{self.stop}]"


class ClipSet:
    """The training clips and a way to read their frames."""

    def __init__(
        self, clips: list[Clip], cache: FrameCache, videos: list[Path], skipped: list[tuple[Path, str]]
    ) -> None:
        self.clips = clips
        self.cache = cache
        self.videos = videos  # the videos that decoded
        self.skipped = skipped  # (path, reason) of those that did not
        self._frames: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def frames(self, clip: Clip) -> np.ndarray:
        """uint8 [clip.length, H, W, 3] (a view into the memory-mapped cache)."""
        if clip.video not in self._frames:
            self._frames[clip.video] = self.cache.get(clip.video).frames
        return self._frames[clip.video][clip.start : clip.stop]


def build_clips(
    videos: list[Path], cache: FrameCache, segment_frames: int, min_frames: int, progress: bool = False
) -> ClipSet:
    """Decode (or read from the cache) every video and cut it into clips; undecodable files are skipped."""
    from model.video import VideoDecodeError

    clips: list[Clip] = []
    kept: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    iterator = videos
    if progress:
        from tqdm import tqdm

        iterator = tqdm(videos, desc="frame cache", unit="video", leave=False)
    for path in iterator:
        try:
            count = len(cache.get(path).frames)
        except (VideoDecodeError, OSError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            logger.warning("skipping %s: %s", path, reason)
            skipped.append((path, reason))
            continue
        kept.append(path)
        for start, stop in segment_bounds(count, segment_frames, min_frames):
            clips.append(Clip(len(clips), path, start, stop))
    if not clips:
        if skipped and not kept:
            raise DataError(
                f"none of the {len(videos)} videos decoded (first failure: {skipped[0][0]}: {skipped[0][1]})"
            )
        raise DataError(f"no clip of at least {min_frames} frames in {len(kept)} videos; lower data.min_clip_frames")
    return ClipSet(clips, cache, kept, skipped)


def segment_bounds(count: int, segment_frames: int, min_frames: int) -> list[tuple[int, int]]:
    """Cut [0, count) into even pieces of about `segment_frames` (never shorter than min_frames)."""
    if count < min_frames:
        return []
    pieces = max(1, round(count / segment_frames))
    edges = np.linspace(0, count, pieces + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b - a >= min_frames]


# ----------------------------------------------------------------------------------------------
# Labeled evaluation manifests


@dataclass
class EvalSet:
    """A labeled benchmark: every video is a database item; queries list their positives."""

    names: list[str]
    paths: list[Path]
    queries: list[int]  # indices into names
    positives: np.ndarray  # bool [len(queries), len(names)]
    unjudged: np.ndarray  # bool [len(queries), len(names)]: left out of the query's ranking

    def exclude(self) -> np.ndarray:
        """bool [len(queries), len(names)]: each query's own column and its unjudged ones."""
        return left_out_of_ranking(self.queries, self.unjudged)


def left_out_of_ranking(queries: list[int], unjudged: np.ndarray) -> np.ndarray:
    """bool [len(queries), videos]: `unjudged` plus each query's own column."""
    out = unjudged.copy()
    out[np.arange(len(queries)), queries] = True
    return out


def read_eval_manifest(path: str | Path) -> EvalSet:
    """JSON: {"videos": {name: path}, "positives": {query name: [names]}}; paths relative to the file.

    Every video is in the database; the query is excluded from its own ranking, and so are the
    names an optional "unjudged": {query name: [names]} lists for it. Relevance is taken as
    given (list both directions for symmetric pairs).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"evaluation manifest not found: {path}")
    try:
        values = json.loads(path.read_text())
        videos = values["videos"]
        positives = values["positives"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{path} must be JSON with 'videos' and 'positives' ({error})") from None
    if not isinstance(videos, dict) or not isinstance(positives, dict) or not videos or not positives:
        raise DataError(f"{path}: 'videos' must map names to paths and 'positives' query names to lists of names")
    names = list(videos)
    index = {name: i for i, name in enumerate(names)}
    paths = []
    for name in names:
        video = Path(videos[name]).expanduser()
        paths.append(video if video.is_absolute() else path.parent / video)
    listed = values.get("unjudged") or {}
    queries = []
    labels = np.zeros((len(positives), len(names)), dtype=bool)
    unjudged = np.zeros_like(labels)
    for row, (query, targets) in enumerate(positives.items()):
        for field, named in (("positives", [query, *targets]), ("unjudged", listed.get(query, []))):
            unknown = [t for t in named if t not in index]
            if unknown:
                raise DataError(f"{path}: {field} name videos not in 'videos': {unknown[:3]}")
        queries.append(index[query])
        labels[row, [index[t] for t in targets]] = True
        unjudged[row, [index[t] for t in listed.get(query, [])]] = True
    return EvalSet(names, paths, queries, labels, unjudged)
