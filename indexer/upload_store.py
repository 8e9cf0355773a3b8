"""Uploaded video files, stored content-addressed (by sha256) under the data directory.

Identical bytes land on the same path, so a re-upload never doubles the disk use. Files are
written to a scratch file first, flushed to disk, then renamed into place: a crash never leaves
half a video under a content address.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from model.fileio import fsync_dir

# Suffixes kept on stored files (a hint for the demuxer and for people browsing the folder).
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_STORED_NAME = re.compile(r"^([0-9a-f]{64})(\.[a-z0-9]{1,5})?$")


class UploadStore:
    """Content-addressed files: `root/ab/cd/<sha256><suffix>`, scratch files in `tmp`."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp

    def prepare(self, *, min_age_s: float = 0.0) -> None:
        """Create the folders and drop scratch files a crash left behind (those unchanged for
        `min_age_s` seconds: where other processes share the store, younger ones may be in use)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.glob("upload-*"):
            if _age(leftover) >= min_age_s:
                leftover.unlink(missing_ok=True)

    def scratch_file(self) -> Path:
        """A new empty file to stream an upload into (same file system as the store)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        os.close(handle)
        return Path(name)

    def path_for(self, sha256: str, suffix: str = "") -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}{safe_suffix(suffix)}"

    def commit(self, scratch: Path, sha256: str, suffix: str = "") -> Path:
        """Move a finished scratch file to its content address, durably; returns the final path."""
        final = self.path_for(sha256, suffix)
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(scratch, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(scratch, final)
        fsync_dir(final.parent)
        return final

    def relative(self, path: Path) -> str:
        """The form kept in the catalog: relative to the store, so the data dir can move."""
        return path.relative_to(self.root).as_posix()

    def resolve(self, stored: str) -> Path:
        path = (self.root / stored).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"stored path escapes the upload store: {stored!r}")
        return path

    def remove(self, stored: str) -> None:
        self.resolve(stored).unlink(missing_ok=True)

    def stored_files(self, *, min_age_s: float = 0.0) -> Iterator[str]:
        """The stored form (see `relative`) of every file at a content address, unchanged for at
        least `min_age_s` seconds; anything else under the root is never listed."""
        for path in sorted(self.root.glob("*/*/*")):
            match = _STORED_NAME.match(path.name)
            if match and path == self.path_for(match[1], match[2] or "") and path.is_file() and _age(path) >= min_age_s:
                yield self.relative(path)


def _age(path: Path) -> float:
    """Seconds since the file last changed (0 when it is already gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def safe_suffix(suffix: str) -> str:
    """A lower-case file suffix like `.mp4`, or "" when the given one looks odd."""
    suffix = suffix.lower()
    return suffix if _SUFFIX.match(suffix) else ""


@dataclass
class ReceivedFile:
    """An upload streamed to a scratch file; the caller commits it or deletes it."""

    path: Path
    sha256: str
    size: int
    filename: str | None
    content_type: str | None

    @property
    def suffix(self) -> str:
        return Path(self.filename).suffix if self.filename else ""

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
