"""The feature store: one file of region features per video, a source of truth beside the catalog.

The vector index is derived from it (rebuilt from here after a crash), and the re-rank reads the
candidates' region features from it on every search, so it lives on disk rather than in RAM
(ARCHITECTURE sections 1 and 11). `FeatureStorage` is the narrow interface the rest of the code
depends on, so an object-storage implementation can replace the local one.

File format: safetensors (no pickle, a JSON header, zero-copy reads). Format 2 (written now)
holds the region features as 4-bit codes with a float16 step per region vector
(indexer.feature_codec: `region_codes` uint8 [T, R, ceil(D / 2)], `region_steps` float16
[T, R]; 140 KB per video-minute instead of 683) and `timestamps` float64 [T]. Frame vectors
are not stored when they follow the model's rule (the normalised mean of a frame's regions):
they are computed from the decoded regions on reading, so a rebuilt index holds exactly what
the store gives; other frame vectors are stored as `frame_vectors` float32 [T, D]. Format 1
(float16 `regions`, `frame_vectors` float32, `timestamps`) is always read, and written when
the store is made with `compact=False` (HAPVR_FEATURE_FORMAT=float16): decoding 4-bit codes
costs CPU on every search, float16 costs page cache. The header metadata
carries the format tag, the video id, the decode info, the fingerprint of the checkpoint that
made the features and a CRC-32 of the stored arrays, so a torn or bit-flipped file is reported
instead of silently scoring garbage.

Window variant: a video with an inner window (picture-in-picture, bars; model.window_track)
also has the features of the window's crops, same format, on the video's own times (the frames
where a window shows, which may start late and end early), in
``<id>.window.safetensors`` beside its own file (metadata `variant: window`). It is written
after the video's file and removed before it, so it never outlives it; `ids()` lists videos
only, and a store from before windows simply has none.

Layout: ``root/<id // 10**6 :06d>/<id // 1000 % 1000 :03d>/<id>.safetensors``. Sequential ids
fill one leaf directory of at most 1,000 files at a time and a middle directory holds at most
1,000 leaves, so no directory grows past a thousand entries up to a billion videos.
"""

from __future__ import annotations

import json
import mmap
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from indexer.feature_codec import CompactVideoFeatures, encode_regions
from model.features import VideoFeatures, mean_frame_vectors
from model.fileio import TEMP_PREFIX, fsync_dir, write_bytes_atomic

FORMAT_TAG = "hapvr-features/2"
FORMAT_V1 = "hapvr-features/1"  # float16 regions; read, no longer written
# Frame vectors whose cosine to the mean rule reaches this for every frame are not stored.
DERIVED_COSINE = 0.999
SUFFIX = ".safetensors"
WINDOW_SUFFIX = ".window" + SUFFIX


class FeatureStoreError(RuntimeError):
    """Base class of the feature store's errors."""


class MissingFeaturesError(FeatureStoreError, KeyError):
    """No features stored for this video id."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "missing features"


class CorruptFeaturesError(FeatureStoreError):
    """A stored file exists but cannot be read back as valid features."""


@runtime_checkable
class FeatureStorage(Protocol):
    """What the indexer and the service need from a feature store."""

    def put(self, video_id: int, features: VideoFeatures) -> None: ...

    def get(self, video_id: int, *, verify: bool | None = None) -> VideoFeatures: ...

    def delete(self, video_id: int) -> None: ...

    def put_window(self, video_id: int, features: VideoFeatures) -> None: ...

    def get_window(self, video_id: int, *, verify: bool | None = None) -> VideoFeatures | None: ...

    def delete_window(self, video_id: int) -> None: ...

    def __contains__(self, video_id: object) -> bool: ...

    def ids(self) -> Iterator[int]: ...


def _checksum(*arrays: np.ndarray) -> str:
    crc = 0
    for array in arrays:
        crc = zlib.crc32(np.ascontiguousarray(array).data.cast("B"), crc)
    return f"{crc:08x}"


def _decode_info(features: VideoFeatures) -> dict[str, str]:
    """The header metadata describing the decode and the model that made the features."""
    info = {
        name: repr(float(value))
        for name in ("duration", "fps", "source_fps")
        if (value := getattr(features, name)) is not None
    }
    if features.checkpoint is not None:
        info["checkpoint"] = features.checkpoint
    return info


def _follows_mean_rule(features: VideoFeatures) -> bool:
    """Whether the frame vectors are the normalised means of the regions (then they need no storing)."""
    derived = mean_frame_vectors(features.regions)
    cosines = np.einsum("td,td->t", derived, features.frame_vectors)
    return bool(np.all(cosines >= DERIVED_COSINE))


def _check_id(video_id: object) -> int:
    if isinstance(video_id, bool) or not isinstance(video_id, (int, np.integer)):
        raise TypeError(f"video ids are integers, got {type(video_id).__name__}")
    value = int(video_id)
    if value < 0:
        raise ValueError(f"video ids are non-negative, got {value}")
    return value


class FeatureStore:
    """Local-disk feature store; see the module docstring for format and layout.

    Safe for concurrent use by threads and processes: every write is a whole-file atomic
    replace, reads never see a partial file. `verify=False` skips the CRC check on reads
    (about 4 GB/s here, 16 ms over the candidates of one search); `scrub()` checks everything.
    """

    def __init__(self, root: str | Path, *, verify: bool = True, compact: bool = True) -> None:
        self.root = Path(root)
        self.verify = verify
        self.compact = compact  # write format 2 (4-bit regions); False: format 1 (float16)

    def path_for(self, video_id: int) -> Path:
        video_id = _check_id(video_id)
        return self.root / f"{video_id // 1_000_000:06d}" / f"{video_id // 1000 % 1000:03d}" / f"{video_id}{SUFFIX}"

    def window_path_for(self, video_id: int) -> Path:
        """Where the features of a video's inner-window crop live (beside its own file)."""
        path = self.path_for(video_id)
        return path.with_name(path.name[: -len(SUFFIX)] + WINDOW_SUFFIX)

    def put(self, video_id: int, features: VideoFeatures) -> None:
        """Store (or replace) a video's features durably and atomically (format 2, compact)."""
        self._write(self.path_for(video_id), video_id, features, {})

    def put_window(self, video_id: int, features: VideoFeatures) -> None:
        """Store (or replace) the features of a video's inner-window crop, as `put` does its own."""
        self._write(self.window_path_for(video_id), video_id, features, {"variant": "window"})

    def get_window(self, video_id: int, *, verify: bool | None = None) -> VideoFeatures | None:
        """The features of a video's inner-window crop, None when it has none; errors as `get`."""
        path = self.window_path_for(video_id)
        data = _map(path, f"window of video {video_id} at {path} is unreadable: empty file")
        if data is None:
            return None
        return self._decode(data, path, int(video_id), self.verify if verify is None else verify)

    def delete_window(self, video_id: int) -> None:
        """Remove a video's window features (absent is fine)."""
        _remove(self.window_path_for(video_id))

    def _write(self, path: Path, video_id: int, features: VideoFeatures, extra: dict[str, str]) -> None:
        from safetensors.numpy import save

        video_id = _check_id(video_id)
        features.check_finite()
        if not self.compact:
            self._put_float16(path, video_id, features, extra)
            return
        codes, steps = encode_regions(features.regions)
        tensors = {
            "region_codes": codes,
            "region_steps": steps,
            "timestamps": features.timestamps,
            # Computed here, at index time and from the exact regions, so no search recomputes them;
            # files written before they existed are read without them (VideoFeatures computes them).
            "frame_weights": features.weights,
        }
        if not _follows_mean_rule(features):
            tensors["frame_vectors"] = features.frame_vectors
        metadata = {
            "format": FORMAT_TAG,
            "video_id": str(video_id),
            "dim": str(features.dim),
            "crc32": _checksum(*(tensors[name] for name in sorted(tensors))),
        }
        metadata.update(_decode_info(features))
        metadata.update(extra)
        write_bytes_atomic(path, save(tensors, metadata=metadata))

    def _put_float16(self, path: Path, video_id: int, features: VideoFeatures, extra: dict[str, str]) -> None:
        """Format 1: float16 regions and float32 frame vectors, stored as they are."""
        from safetensors.numpy import save

        tensors = {
            "regions": features.regions.astype(np.float16, copy=False),  # float32 when read from format 2
            "frame_vectors": features.frame_vectors,
            "timestamps": features.timestamps,
            "frame_weights": features.weights,
        }
        metadata = {"format": FORMAT_V1, "video_id": str(video_id), "crc32": _checksum(*tensors.values())}
        metadata.update(_decode_info(features))
        metadata.update(extra)
        write_bytes_atomic(path, save(tensors, metadata=metadata))

    def get(self, video_id: int, *, verify: bool | None = None) -> VideoFeatures:
        """Read a video's features; MissingFeaturesError if absent, CorruptFeaturesError if unreadable.

        `verify` (default: the store's setting) checks the CRC; the header, shapes and offsets
        are always checked. The arrays are copy-on-write views of a private memory map of the
        file: nothing is copied until used, and writing to them never reaches the file.
        Files are only ever replaced whole (never truncated in place), so a mapping stays valid.
        """
        path = self.path_for(video_id)
        data = _map(path, f"features of video {video_id} at {path} are unreadable: empty file")
        if data is None:
            raise MissingFeaturesError(f"no features stored for video {video_id}")
        return self._decode(data, path, int(video_id), self.verify if verify is None else verify)

    def scrub(self) -> list[int]:
        """Ids whose stored files fail to read or fail their checksum (a background integrity pass)."""
        damaged = []
        for video_id in self.ids():
            try:
                self.get(video_id, verify=True)
            except CorruptFeaturesError:
                damaged.append(video_id)
            except MissingFeaturesError:
                continue  # deleted while scrubbing
        return damaged

    def _decode(self, data: mmap.mmap, path: Path, video_id: int, verify: bool) -> VideoFeatures:
        try:
            arrays, metadata = parse_safetensors(data)
        except ValueError as error:
            raise CorruptFeaturesError(f"features of video {video_id} at {path} are unreadable: {error}") from None
        if metadata.get("format") not in (FORMAT_TAG, FORMAT_V1):
            raise CorruptFeaturesError(
                f"features of video {video_id} at {path} have format {metadata.get('format')!r}, "
                f"expected {FORMAT_TAG!r} or {FORMAT_V1!r}"
            )
        if metadata.get("video_id") != str(video_id):
            raise CorruptFeaturesError(f"features at {path} belong to video {metadata.get('video_id')}, not {video_id}")
        # frame_weights are absent from files written before they were stored.
        names = ["regions", "frame_vectors", "timestamps", *(["frame_weights"] if "frame_weights" in arrays else [])]
        if metadata["format"] == FORMAT_TAG:
            optional = {"frame_vectors", "frame_weights"} & set(arrays)
            names = sorted({"region_codes", "region_steps", "timestamps"} | optional)
        try:
            stored = [arrays[name] for name in names]
        except KeyError as error:
            raise CorruptFeaturesError(f"features of video {video_id} at {path} lack tensor {error}") from None
        if verify and _checksum(*stored) != metadata.get("crc32"):
            raise CorruptFeaturesError(f"features of video {video_id} at {path} fail their checksum")
        details: dict[str, Any] = {
            "duration": _optional_float(metadata.get("duration")),
            "fps": _optional_float(metadata.get("fps")),
            "source_fps": _optional_float(metadata.get("source_fps")),
            "checkpoint": metadata.get("checkpoint"),
            "frame_weights": arrays.get("frame_weights"),
        }
        try:
            if metadata["format"] == FORMAT_V1:
                return VideoFeatures(
                    regions=arrays["regions"],
                    frame_vectors=arrays["frame_vectors"],
                    timestamps=arrays["timestamps"],
                    **details,
                )
            # Decoded lazily: the re-rank decodes the codes straight into its workspace.
            return CompactVideoFeatures.from_codes(
                arrays["region_codes"],
                arrays["region_steps"],
                int(metadata["dim"]),
                arrays["timestamps"],
                arrays.get("frame_vectors"),
                **details,
            )
        except (KeyError, ValueError) as error:
            raise CorruptFeaturesError(f"features of video {video_id} at {path} are invalid: {error}") from None

    def delete(self, video_id: int) -> None:
        """Remove a video's features and window; deleting an absent video is not an error."""
        self.delete_window(video_id)  # first: a crash in between leaves no window without its video
        _remove(self.path_for(video_id))

    def __contains__(self, video_id: object) -> bool:
        try:
            return self.path_for(video_id).is_file()  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def ids(self) -> Iterator[int]:
        """Stored video ids in ascending order (leftover temp files of interrupted writes are skipped)."""
        if not self.root.is_dir():
            return
        for top in _numeric_dirs(self.root):
            for leaf in _numeric_dirs(top):
                found = []
                with os.scandir(leaf) as entries:
                    for entry in entries:
                        name = entry.name
                        if name.endswith(SUFFIX) and not name.startswith(TEMP_PREFIX):
                            stem = name[: -len(SUFFIX)]
                            if stem.isdigit():
                                found.append(int(stem))
                yield from sorted(found)

    def __len__(self) -> int:
        return sum(1 for _ in self.ids())

    def remove_partial_writes(self) -> int:
        """Delete temp files left by writes a crash interrupted; returns how many. Call at start-up."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for top in _numeric_dirs(self.root):
            for leaf in _numeric_dirs(top):
                for stale in leaf.glob(f"{TEMP_PREFIX}*"):
                    stale.unlink(missing_ok=True)
                    removed += 1
        return removed


def _map(path: Path, empty_message: str) -> mmap.mmap | None:
    """A private copy-on-write map of a stored file; None when there is none."""
    try:
        with open(path, "rb") as handle:
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    except FileNotFoundError:
        return None
    except ValueError:  # an empty file cannot be mapped
        raise CorruptFeaturesError(empty_message) from None


def _remove(path: Path) -> None:
    """Unlink a stored file durably (absent is fine)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def _numeric_dirs(parent: Path) -> list[Path]:
    with os.scandir(parent) as entries:
        dirs = [Path(entry.path) for entry in entries if entry.is_dir() and entry.name.isdigit()]
    return sorted(dirs, key=lambda path: int(path.name))


_DTYPES: dict[str, np.dtype[Any]] = {
    "U8": np.dtype("u1"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}


def parse_safetensors(data: bytes | mmap.mmap) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A safetensors file's float and uint8 tensors as views into `data`, and its metadata.

    The search path reads a hundred files per query; viewing a memory map instead of copying
    the bytes twice (read, then safetensors.numpy.load) cut that stage from about 50 ms to a
    few. Every offset and size is checked, so a damaged file raises ValueError rather than
    yielding garbage shapes.
    """
    if len(data) < 8:
        raise ValueError("file shorter than its header")
    header_size = int.from_bytes(data[:8], "little")
    if header_size > len(data) - 8:
        raise ValueError("header runs past the end of the file")
    try:
        header = json.loads(data[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    body = 8 + header_size
    arrays: dict[str, np.ndarray] = {}
    metadata = header.pop("__metadata__", None) or {}
    for name, spec in header.items():
        try:
            dtype = _DTYPES[spec["dtype"]]
            shape = tuple(int(size) for size in spec["shape"])
            begin, end = (int(offset) for offset in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r} has a malformed entry") from None
        count = int(np.prod(shape, dtype=np.int64))
        if (
            min(shape, default=0) < 0
            or not 0 <= begin <= end <= len(data) - body
            or end - begin != count * dtype.itemsize
        ):
            raise ValueError(f"tensor {name!r} does not fit the file (truncated or damaged)")
        arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=body + begin).reshape(shape)
    if not isinstance(metadata, dict):
        raise ValueError("metadata is not a JSON object")
    return arrays, {str(key): str(value) for key, value in metadata.items()}


def _optional_float(value: str | None) -> float | None:
    return None if value is None else float(value)
