"""Durable file writes shared by every package: readers see the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# Prefix of the temp files an atomic write leaves behind if the process dies mid-write;
# stores that scan their folders skip and sweep files with it.
TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block succeeds, fsync it and rename it over `path`.

    For writers that want a file name rather than a handle (safetensors, ONNX, FAISS). The temp
    file lives in the same directory, so the rename is atomic; the directory is fsynced after.
    The temp name keeps the target's suffix, for writers that pick a format by it. The file is
    created 0600; `mode` (e.g. 0o644 for files meant to be shared) is set before the rename.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=target.suffix, dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object], *, mode: int | None = None) -> None:
    """Call `write(handle)` on a temp file beside `path`, then durably rename it over `path`."""
    with atomic_path(path, mode=mode) as temporary, open(temporary, "wb") as handle:
        write(handle)


def write_bytes_atomic(path: str | Path, data: bytes | memoryview, *, mode: int | None = None) -> None:
    atomic_write(path, lambda handle: handle.write(data), mode=mode)


def write_text_atomic(path: str | Path, text: str, *, mode: int | None = None) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)
