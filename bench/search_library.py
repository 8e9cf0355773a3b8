"""The search benchmark's library: synthetic videos in a real feature store, grown across sizes and runs.

Video i (1-based) is drawn from its own random stream (seed, i), so the library of N videos is
the first N videos of every larger one: one build serves every measured size, and a resumed
build regenerates nothing it already stored. The frame index is saved at each measured size
(`index-N.faiss` beside the store); the next size starts from the largest saved index below
it and adds the rest, reading stored features instead of generating them again.

The index is then loaded back from its file and searched, as the service does at start-up;
the resident memory that load adds is the index's cost in RAM. As in the service, the index is
given the store, so an IVF index that has outgrown its training retrains (in the background,
waited for before a save or a measurement) unless `retrain=False` keeps the cells of its first
training, while it grows as well as once loaded.

Drawing and storing videos (a durable, fsynced write per video) costs more than indexing them:
with `workers` > 1, worker processes fill the store a chunk of videos ahead of the index, which
reads each video back from the store as the service would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.feature_store import FeatureStore
from indexer.synthetic import synthetic_video
from indexer.vector_index import FaissIndex, IndexConfig, IndexLoadError
from model.features import VideoFeatures

MANIFEST = "library.json"
# A stored frame (feature store format 2): 9 x 512 4-bit region codes, 9 float16 steps, a float64
# timestamp (synthetic frame vectors follow the mean rule, so they are not stored).
STORED_BYTES_PER_FRAME = 9 * 256 + 9 * 2 + 8
FILL_CHUNK = 500  # videos a worker draws and stores per task


class LibraryMismatch(RuntimeError):
    """The data directory holds a library drawn with other parameters."""


@dataclass(frozen=True)
class LibrarySpec:
    """How the synthetic library is drawn: lengths log-uniform in [min_seconds, max_seconds] at 1 fps."""

    min_seconds: float = 5.0
    max_seconds: float = 50.0
    seed: int = 2026
    threshold: int | None = None  # frames before the index turns IVF (None: IndexConfig's)

    def __post_init__(self) -> None:
        if not 1 <= self.min_seconds <= self.max_seconds:
            raise ValueError("need 1 <= min_seconds <= max_seconds")

    def index_config(self) -> IndexConfig:
        return IndexConfig() if self.threshold is None else IndexConfig(approximate_threshold=self.threshold)

    def mean_frames(self) -> float:
        """Expected frames per video (the mean of the log-uniform length)."""
        if self.min_seconds == self.max_seconds:
            return self.min_seconds
        return (self.max_seconds - self.min_seconds) / math.log(self.max_seconds / self.min_seconds)

    def store_bytes(self, videos: int) -> float:
        """Expected feature-store payload of `videos` videos (file headers and blocks aside)."""
        return videos * self.mean_frames() * STORED_BYTES_PER_FRAME

    def draw(self, video_id: int) -> VideoFeatures:
        """Video `video_id`'s features, the same on every call and in every library."""
        rng = np.random.default_rng([self.seed, video_id])
        seconds = math.exp(rng.uniform(math.log(self.min_seconds), math.log(self.max_seconds)))
        return synthetic_video(rng, max(1, int(round(seconds))))


@dataclass
class IndexBuild:
    """How the index of one size came about and what it costs."""

    generated: int  # videos drawn and stored by this run
    reused: int  # videos read back from the store (a resumed or grown library)
    build_s: float  # growing the index to this size (0 when a saved one was complete)
    file_bytes: int  # the saved index (FAISS serialisation and ids)
    resident_bytes: int | None  # RSS growth of this process when loading it; None off Linux
    retrain_s: float = 0.0  # retraining the loaded index for its size (0 when it needed none)
    store_s: float = 0.0  # drawing and storing the generated videos, summed over the workers
    add_s: float = 0.0  # adding frame vectors to the index (training at the IVF switch included)


def store_drawn(root: Path, spec: LibrarySpec, video_ids: range) -> tuple[int, float]:
    """Draw and store the videos of `video_ids` that the store at `root` lacks -> (stored, seconds)."""
    store = FeatureStore(root, verify=False)
    started = time.perf_counter()
    stored = 0
    for video_id in video_ids:
        if video_id not in store:
            store.put(video_id, spec.draw(video_id))
            stored += 1
    return stored, time.perf_counter() - started


class SyntheticLibrary:
    """The store and the saved indexes under `root`; see the module docstring."""

    def __init__(self, root: Path, spec: LibrarySpec, refine_factor: int = 0, workers: int = 1) -> None:
        self.root = Path(root)
        self.spec = spec
        self.workers = workers
        # How the index is searched, not how the library is drawn: not in the manifest. An index
        # saved without a refine part gets one when it is retrained (at load, past 4x its training).
        self.config = replace(spec.index_config(), refine_factor=refine_factor)
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_manifest()
        self.store = FeatureStore(self.root / "features", verify=False)
        self.store.remove_partial_writes()  # an interrupted run may have left some

    def _check_manifest(self) -> None:
        path = self.root / MANIFEST
        wanted = asdict(self.spec)
        if path.exists():
            found = json.loads(path.read_text())
            if found != wanted:
                raise LibraryMismatch(f"{self.root} holds a library drawn with {found}, not {wanted}")
        else:
            path.write_text(json.dumps(wanted, indent=1))

    def index_path(self, size: int) -> Path:
        return self.root / f"index-{size}.faiss"

    def open_index(self, size: int, *, retrain: bool = True) -> tuple[FaissIndex, IndexBuild]:
        """The index of videos 1..size, saved and loaded back (built or grown first if needed);
        with `retrain`, retrained for its size if it has outgrown its training (`retrain_s`)."""
        path, config = self.index_path(size), self.config
        build = IndexBuild(generated=0, reused=0, build_s=0.0, file_bytes=0, resident_bytes=None)
        try:
            FaissIndex.load(path, config)  # also a warm-up: the first load in a process maps code, starts threads
        except IndexLoadError:  # never saved, or its save was interrupted
            self._grow(size, build, retrain)
            FaissIndex.load(path, config)
        build.file_bytes = path.stat().st_size
        before = resident_bytes()
        index = FaissIndex.load(path, config, self.store if retrain else None)
        after = resident_bytes()
        if before is not None and after is not None:
            build.resident_bytes = after - before
        started = time.perf_counter()
        index.wait_for_training()
        build.retrain_s = time.perf_counter() - started
        return index, build

    def _grow(self, size: int, build: IndexBuild, retrain: bool) -> None:
        started = time.perf_counter()
        start, index = self._largest_saved(size, retrain)
        chunks = [range(first, min(first + FILL_CHUNK, size + 1)) for first in range(start + 1, size + 1, FILL_CHUNK)]
        with (
            self._filled(chunks) as filled,
            tqdm(desc=f"library to {size}", initial=start, total=size, mininterval=5, unit="video") as progress,
        ):
            for chunk, (stored, seconds) in zip(chunks, filled, strict=True):
                build.generated += stored
                build.reused += len(chunk) - stored
                build.store_s += seconds
                for video_id in chunk:
                    # As the service indexes them: the vectors the store gives back (from its compact regions).
                    vectors = self.store.get(video_id).frame_vectors
                    adding = time.perf_counter()
                    index.add(video_id, vectors)
                    build.add_s += time.perf_counter() - adding
                progress.update(len(chunk))
        adding = time.perf_counter()
        index.wait_for_training()
        build.add_s += time.perf_counter() - adding
        index.save(self.index_path(size))
        build.build_s = time.perf_counter() - started

    @contextmanager
    def _filled(self, chunks: list[range]) -> Iterator[Iterable[tuple[int, float]]]:
        """store_drawn over the chunks, in order: in this process, or ahead of it in `workers` processes."""
        fill: Callable[[range], tuple[int, float]] = partial(store_drawn, self.store.root, self.spec)
        if self.workers <= 1:
            yield map(fill, chunks)
            return
        # spawn, not fork: this process already runs FAISS's and torch's thread pools.
        with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn")) as pool:
            yield pool.map(fill, chunks)

    def _largest_saved(self, size: int, retrain: bool) -> tuple[int, FaissIndex]:
        """(n, index of videos 1..n) for the largest readable saved index with n < size; (0, empty) if none.
        Without `retrain` the index gets no store, so it keeps the cells of its first training as it grows."""
        store = self.store if retrain else None
        saved = sorted((int(p.stem.split("-", 1)[1]) for p in self.root.glob("index-*.faiss")), reverse=True)
        for count in (n for n in saved if n < size):
            try:
                index = FaissIndex.load(self.index_path(count), self.config, store)
            except IndexLoadError:
                continue  # an interrupted save: try a smaller one
            if index.video_ids() == set(range(1, count + 1)):
                return count, index
        return 0, FaissIndex(self.spec.index_config(), store)

    def disk_bytes(self, size: int) -> int:
        """Bytes the store's files of videos 1..size take on disk (allocated blocks)."""
        return sum(os.stat(self.store.path_for(video_id)).st_blocks * 512 for video_id in range(1, size + 1))


def resident_bytes() -> int | None:
    """This process's resident set size after handing freed heap back to the OS; None off Linux."""
    _trim_heap()
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _trim_heap() -> None:
    # glibc keeps freed small blocks in its arenas; without a trim, RSS deltas count garbage.
    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
