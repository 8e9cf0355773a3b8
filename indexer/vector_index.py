"""The FAISS frame index: one vector per indexed frame, used to find candidate videos for the re-rank.

It is derived data (ARCHITECTURE section 1): the feature store holds every frame vector, so the
index can always be rebuilt (`rebuild`) or brought back in line with the catalog (`reconcile`).

Ids. FAISS stores one int64 per vector; we pack ``(video_id << FRAME_BITS) | frame_index`` with
FRAME_BITS = 20: up to 1,048,575 frames per video (291 hours at 1 fps, far past the decoder's
7,200-frame default) and 43 bits of video id (8.8e12 videos), the sign bit left at 0 so the -1
FAISS uses for "no result" never collides with a real id. All frames of one video occupy one
contiguous id range, so `remove(video_id)` is a single IDSelectorRange.

Kinds. Exact inner product (IndexIDMap2 over IndexFlatIP) while the index holds fewer than
`approximate_threshold` frames; past it, an IVF index trained on the vectors present at that
moment. The default approximate kind is IVF-PQ with 4-bit fast-scan codes ("IVFn,PQ128x4fs" at
512-d): 64 bytes a vector instead of 2 KB (section 11: 3 M frames are 6 GB flat, 0.2 GB as
codes), SIMD distance tables that scan a cell several times faster than 8-bit PQ, sub-quantisers
of 16 centroids that train in seconds (8-bit PQ took 112 s on 100k vectors here), and
remove_ids support (HNSW has none, and deletes are part of the API). Its scores are coarse,
which is fine: every candidate is re-scored exactly from the feature store. On 100k synthetic
frames it found the exact nearest frame of every noisy query in its top 10 at nprobe 16.
IVF-Flat (exact scores, 2 KB a vector) is the alternative for collections that fit in RAM.
Refine (`refine_factor`, off by default): an IVF-PQ index can also keep an 8-bit scalar-quantised
copy of every vector (1 byte a dimension) under the same packed ids; a search then asks the PQ
cells for refine_factor x k neighbours and keeps the k best by their 8-bit scores. On the 10k
benchmark library (bench/results/search.md) recall@C rose from 0.255 to 0.358 (x2) and 0.374
(x4), for 520 bytes a frame (about 31 KB per video-minute at 1 fps) and a candidate stage
about 3x slower at x2; off until its effect on mAP at scale is measured.
PQ splits a vector into equal parts, so a dimension without a fitting divisor (a PCA fitted to
287 dims on a small folder) is first turned by a random orthonormal map into the next multiple
of the sub-quantiser count ("RR384,IVFn,PQ128x4fs"): inner products are unchanged, the extra
dimensions are zero.

Growth. An IVF index keeps the cells it was trained with, so one trained at 20k frames still
has about 500 cells at 2M frames (4,000 vectors a cell, and centroids fitted to the first
videos only). Once the index holds `retrain_growth` times the frames it was trained on (4x:
twice the cells), it is retrained in a background thread from the full-precision vectors of the
feature store it was given (or, for IVF-Flat without a store, its own exact vectors), checked
on every add and when a saved index is loaded. IVF-PQ codes cannot give the vectors back, so
without a store it keeps its cells. A retrained index visits the same share of its cells as the
first one did (`nprobe_for`): more cells at the same nprobe would scan less of the collection,
and candidate recall fell with it (bench/results/search.md).

Threading. One lock around every FAISS call: searches from request threads and adds or removes
from worker threads never overlap inside FAISS. The switch to IVF and every retraining train
on a snapshot without holding the lock; changes made meanwhile are logged and replayed before
the swap, and searches use the old index until then.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import faiss
import numpy as np

from indexer.variants import indexed_vectors
from model.fileio import write_bytes_atomic

if TYPE_CHECKING:
    from indexer.feature_store import FeatureStorage

log = logging.getLogger(__name__)

FRAME_BITS = 20
MAX_FRAMES_PER_VIDEO = 1 << FRAME_BITS
MAX_VIDEO_ID = (1 << (63 - FRAME_BITS)) - 1
FORMAT_TAG = "hapvr-index/1"

IndexKind = Literal["flat", "ivfpq", "ivfflat"]

# FAISS 1.15 computes flat distances with BLAS only from 128,000 query vectors on; below, a
# per-query SIMD loop runs 3x slower than one GEMM for our batches (24 query frames against
# 57k frames: 63 ms vs 20 ms on 2 cores). A search batches all frames of a query video, so
# switch to BLAS from 16 query vectors (process-wide FAISS setting; it only picks the kernel).
faiss.cvar.distance_compute_blas_threshold = 16


class IndexLoadError(RuntimeError):
    """A persisted index is missing, unreadable or disagrees with its sidecar: rebuild it from the store."""


def pack_ids(video_id: int, frame_indices: np.ndarray) -> np.ndarray:
    """(video, frame) -> int64 FAISS ids; see the module docstring for the bit split."""
    if not 0 <= video_id <= MAX_VIDEO_ID:
        raise ValueError(f"video id {video_id} outside [0, {MAX_VIDEO_ID}]")
    frames = np.asarray(frame_indices, dtype=np.int64)
    if frames.size and (frames.min() < 0 or frames.max() >= MAX_FRAMES_PER_VIDEO):
        raise ValueError(f"frame indices must lie in [0, {MAX_FRAMES_PER_VIDEO})")
    return (np.int64(video_id) << FRAME_BITS) | frames


def unpack_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 FAISS ids -> (video_ids, frame_indices); FAISS's -1 (no result) stays -1 in both."""
    ids = np.asarray(ids, dtype=np.int64)
    missing = ids < 0
    videos = np.where(missing, -1, ids >> FRAME_BITS)
    frames = np.where(missing, -1, ids & (MAX_FRAMES_PER_VIDEO - 1))
    return videos, frames


@dataclass(frozen=True)
class IndexConfig:
    """How the frame index is built. Sizes are in frames (one vector per frame at 1 fps)."""

    dim: int = 512
    # Exact search costs query frames x indexed frames x dim: about 1 ms per 1,000 indexed frames
    # for a 64-frame query on two cores (70 ms at 57k frames). 20k frames (5.5 hours of video)
    # keep the candidate stage near 20 ms; past that, IVF (7 ms at 100k frames).
    approximate_threshold: int = 20_000
    approximate_kind: Literal["ivfpq", "ivfflat"] = "ivfpq"
    nlist: int | None = None  # IVF cells; None: about 4 * sqrt(frames) at training time
    pq_bytes: int = 64  # PQ code bytes per vector (at most): up to 2 * pq_bytes sub-quantisers of 4 bits
    # IVF cells visited per query vector, for the cells of the first training (at the threshold);
    # a retrained index with more cells visits as large a share of them (`nprobe_for`).
    nprobe: int = 32
    max_training_vectors: int = 262_144
    # Retrain an IVF index once it holds this many times the frames it was trained on (None: never).
    retrain_growth: float | None = 4.0
    # IVF-PQ only: keep an 8-bit scalar-quantised copy of every vector (1 byte a dimension) and
    # re-score a shortlist of refine_factor * k PQ neighbours with it (see Refine); 0: off.
    refine_factor: int = 0

    def __post_init__(self) -> None:
        if min(self.dim, self.approximate_threshold, self.nprobe, self.pq_bytes) <= 0:
            raise ValueError("dim, approximate_threshold, nprobe and pq_bytes must be positive")
        if self.refine_factor < 0:
            raise ValueError("refine_factor must be 0 (off) or positive")
        if self.retrain_growth is not None and self.retrain_growth <= 1:
            raise ValueError("retrain_growth must exceed 1 (or be None)")


@runtime_checkable
class VectorIndex(Protocol):
    """Frame vectors of ready videos: what search, ingest and start-up need from a vector index.

    Derived data, rebuilt from the feature store at will. FaissIndex is the in-process engine;
    a sharded or remote engine can provide the same interface.
    """

    def add(self, video_id: int, vectors: np.ndarray) -> None: ...

    def remove(self, video_id: int) -> int: ...

    def video_ids(self) -> Iterable[int]: ...

    def rebuild(self, store: FeatureStorage, video_ids: Iterable[int] | None = None) -> int: ...

    def save(self, path: str | Path) -> Any: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def frames_of(self, video_id: int) -> int: ...

    @property
    def num_frames(self) -> int: ...

    @property
    def num_videos(self) -> int: ...

    def __contains__(self, video_id: object) -> bool: ...


@dataclass(frozen=True)
class IndexInfo:
    """The sidecar's content: enough to tell, without reading the index, whether it is current."""

    kind: str
    dim: int
    frames: int
    videos: int
    generation: int
    updated_at: float


def _new_flat(dim: int):
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _choose_nlist(config: IndexConfig, frames: int) -> int:
    if config.nlist is not None:
        return config.nlist
    # ~4 sqrt(n) cells, at least 39 training points each (FAISS's minimum for k-means).
    return int(max(16, min(4 * math.sqrt(frames), frames // 39, 65536)))


def nprobe_for(config: IndexConfig, nlist: int) -> int:
    """Cells to visit in an IVF index of `nlist` cells: `config.nprobe` of the cells trained at the
    threshold, and the same share of a retrained index's cells, so retraining keeps the share of
    the collection a search scans (and its recall and cost) instead of shrinking it."""
    first = _choose_nlist(config, config.approximate_threshold)
    return int(min(nlist, max(config.nprobe, round(config.nprobe * nlist / first))))


def pq_layout(dim: int, pq_bytes: int) -> tuple[int, int]:
    """(dimension PQ sees, 4-bit sub-quantisers) for `dim`-d vectors in at most `pq_bytes` a vector.

    The count is even (fast-scan packs two per byte), at most 2 * pq_bytes and at most dim rounded
    up to even: 128 for 512-d at 64 bytes. It must divide the dimension PQ sees. The largest even
    divisor of dim is taken when it reaches half the most allowed (24 for 48-d at 16 bytes);
    otherwise (287-d, or 514-d whose best divisor is 2) the vectors are padded to the next multiple
    of the most allowed (384 for 287-d at 64 bytes).
    """
    most = min(2 * pq_bytes, dim + dim % 2)
    divisor = next((count for count in range(most, 1, -2) if dim % count == 0), 0)
    if 2 * divisor >= most:
        return dim, divisor
    return -(-dim // most) * most, most


def _train_approximate(config: IndexConfig, vectors: np.ndarray):
    """A trained, empty IVF index for `vectors` (trained on a random sample of at most max_training_vectors)."""
    nlist = _choose_nlist(config, len(vectors))
    if config.approximate_kind == "ivfpq":
        padded, subquantizers = pq_layout(config.dim, config.pq_bytes)
        rotation = f"RR{padded}," if padded != config.dim else ""
        description = f"{rotation}IVF{nlist},PQ{subquantizers}x4fs"
    else:
        description = f"IVF{nlist},Flat"
    index = faiss.index_factory(config.dim, description, faiss.METRIC_INNER_PRODUCT)
    sample = vectors
    if len(vectors) > config.max_training_vectors:
        picks = np.random.default_rng(0).choice(len(vectors), config.max_training_vectors, replace=False)
        sample = vectors[np.sort(picks)]
    started = time.perf_counter()
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    index.train(sample)
    faiss.extract_index_ivf(index).nprobe = nprobe_for(config, nlist)
    if config.approximate_kind == "ivfpq" and config.refine_factor:
        exact = faiss.IndexScalarQuantizer(config.dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        exact.train(sample)
        index = faiss.IndexRefine(index, faiss.IndexIDMap2(exact))
        index.k_factor = config.refine_factor
        description += f" + SQ8 refine x{config.refine_factor}"
    log.info("trained %s on %d vectors in %.1f s", description, len(sample), time.perf_counter() - started)
    return index


# Refine. faiss.IndexRefine itself needs sequential ids (it checks labels < ntotal), and ours are
# packed video/frame ids; so the IndexRefine only holds the two parts (and saves them as one
# file): adds and removes go to both parts, and the re-scoring is `_search` below.


REFINE_GATHER_FLOATS = 1 << 22  # 16 MB of shortlisted vectors gathered at a time


def _add(index: Any, vectors: np.ndarray, ids: np.ndarray) -> None:
    if isinstance(index, faiss.IndexRefine):
        index.base_index.add_with_ids(vectors, ids)
        index.refine_index.add_with_ids(vectors, ids)
        index.ntotal = index.base_index.ntotal
    else:
        index.add_with_ids(vectors, ids)


def _remove(index: Any, video_id: int) -> int:
    start = video_id << FRAME_BITS
    selector = faiss.IDSelectorRange(start, start + MAX_FRAMES_PER_VIDEO)
    if not isinstance(index, faiss.IndexRefine):
        return int(index.remove_ids(selector))
    removed = int(index.base_index.remove_ids(selector))
    index.refine_index.remove_ids(selector)
    index.ntotal = index.base_index.ntotal
    return removed


def _search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k best frames per query; with a refine part, the k_factor * k PQ
    neighbours are re-scored from their 8-bit vectors and the best k kept."""
    if not isinstance(index, faiss.IndexRefine):
        return index.search(queries, k)
    _, labels = index.base_index.search(queries, int(k * index.k_factor))
    found = labels >= 0
    unique = np.unique(labels[found])
    if len(unique) == 0:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    vectors = index.refine_index.reconstruct_batch(unique)
    rows = np.searchsorted(unique, np.where(found, labels, unique[0]))
    # Each query against its own shortlist only (a product of all queries with every shortlisted
    # vector costs N times more); a few queries at a time bound the gathered [n, k', D] block.
    scores = np.empty(labels.shape, np.float32)
    step = max(1, REFINE_GATHER_FLOATS // (labels.shape[1] * queries.shape[1]))
    for first in range(0, len(queries), step):
        block = slice(first, first + step)
        scores[block] = np.matmul(vectors[rows[block]], queries[block, :, None])[..., 0]
    scores = np.where(found, scores, -np.inf).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(labels, order, axis=1)


def _trained_size_of(index) -> int:
    """Frames an IVF index of a saved file without that record was trained on, from its cells:
    the smallest count `_choose_nlist` gives that many cells for."""
    nlist = int(faiss.extract_index_ivf(index).nlist)
    return max((nlist // 4) ** 2, 39 * nlist)


def _kind_of(index) -> IndexKind:
    if isinstance(index, faiss.IndexIDMap2):
        return "flat"
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))  # under the padding rotation, if any
    return "ivfpq" if isinstance(ivf, (faiss.IndexIVFPQ, faiss.IndexIVFPQFastScan)) else "ivfflat"


def _all_ids(index) -> np.ndarray:
    if isinstance(index, faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    invlists = faiss.extract_index_ivf(index).invlists
    assert invlists is not None
    parts = []
    for cell in range(invlists.nlist):
        size = invlists.list_size(cell)
        if size:
            parts.append(faiss.rev_swig_ptr(invlists.get_ids(cell), size).copy())
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def _flat_contents(index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of an IndexIDMap2 over IndexFlatIP, copied."""
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    flat: Any = faiss.downcast_index(index.index)  # the stubs do not know IndexFlat.get_xb
    vectors = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d).copy()
    return ids, vectors


def _counts(ids: np.ndarray) -> dict[int, int]:
    videos, _ = unpack_ids(ids)
    values, counts = np.unique(videos, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


class FaissIndex:
    """FAISS frame index; see the module docstring. Thread-safe.

    `store`, when given, is where a retraining reads the full-precision frame vectors of the
    videos indexed (see Growth in the module docstring).
    """

    def __init__(self, config: IndexConfig | None = None, store: FeatureStorage | None = None) -> None:
        self.config = config or IndexConfig()
        self.store = store
        self._trained_frames = 0  # frames the current IVF index was trained on (0: flat)
        self._training: threading.Thread | None = None
        self._warned_no_store = False
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._index = _new_flat(self.config.dim)
        self._videos: dict[int, int] = {}  # video id -> frames indexed
        self._generation = 0
        self._saved_generation = 0
        self._updated_at = time.time()
        # While an IVF index trains off-lock, changes are applied to the live index and logged here.
        self._pending: list[tuple[str, int, np.ndarray | None]] | None = None

    # -- state ---------------------------------------------------------------------------------
    @property
    def kind(self) -> IndexKind:
        with self._lock:
            return _kind_of(self._index)

    @property
    def num_frames(self) -> int:
        with self._lock:
            return int(self._index.ntotal)

    @property
    def ivf_cells(self) -> int | None:
        """Cells of the IVF index searched now; None while flat."""
        with self._lock:
            return None if _kind_of(self._index) == "flat" else int(faiss.extract_index_ivf(self._index).nlist)

    @property
    def refine_factor(self) -> int | None:
        """Shortlist factor of the 8-bit re-scoring (None: the index has no refine part)."""
        with self._lock:
            return int(self._index.k_factor) if isinstance(self._index, faiss.IndexRefine) else None

    @property
    def nprobe(self) -> int | None:
        """Cells a search visits now; None while flat."""
        with self._lock:
            return None if _kind_of(self._index) == "flat" else int(faiss.extract_index_ivf(self._index).nprobe)

    def wait_for_training(self, timeout: float | None = None) -> bool:
        """Wait for a background retraining to finish; True when none is running any more."""
        thread = self._training
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def num_videos(self) -> int:
        with self._lock:
            return len(self._videos)

    def __len__(self) -> int:
        return self.num_videos

    def __contains__(self, video_id: object) -> bool:
        with self._lock:
            return video_id in self._videos

    def video_ids(self) -> set[int]:
        with self._lock:
            return set(self._videos)

    def frames_of(self, video_id: int) -> int:
        with self._lock:
            return self._videos.get(video_id, 0)

    @property
    def generation(self) -> int:
        """Increases with every change; equal to the saved generation when nothing is unsaved."""
        with self._lock:
            return self._generation

    @property
    def dirty(self) -> bool:
        with self._lock:
            return self._generation != self._saved_generation

    def info(self) -> IndexInfo:
        with self._lock:
            return IndexInfo(
                kind=_kind_of(self._index),
                dim=self.config.dim,
                frames=int(self._index.ntotal),
                videos=len(self._videos),
                generation=self._generation,
                updated_at=self._updated_at,
            )

    # -- changes -------------------------------------------------------------------------------
    def add(self, video_id: int, vectors: np.ndarray) -> None:
        """Index a video's frame vectors [T, D]; a video already present is replaced (re-ingest is idempotent)."""
        vectors = self._check_vectors(vectors)
        ids = pack_ids(int(video_id), np.arange(len(vectors)))
        with self._lock:
            self._remove_locked(int(video_id))
            _add(self._index, vectors, ids)
            self._videos[int(video_id)] = len(vectors)
            self._touch()
            if self._pending is not None:
                self._pending.append(("add", int(video_id), vectors))
            switch = (
                self._pending is None
                and isinstance(self._index, faiss.IndexIDMap2)
                and self._index.ntotal >= self.config.approximate_threshold
            )
            if switch:
                changes: list[tuple[str, int, np.ndarray | None]] = []
                self._pending = changes
                ids_snapshot, vectors_snapshot = _flat_contents(self._index)
            else:
                self._retrain_if_grown_locked()
        if switch:
            self._switch_to_approximate(ids_snapshot, vectors_snapshot, changes)

    def remove(self, video_id: int) -> int:
        """Remove every frame of a video; returns how many were removed (0 if it was absent)."""
        with self._lock:
            removed = self._remove_locked(int(video_id))
            if removed:
                self._touch()
                if self._pending is not None:
                    self._pending.append(("remove", int(video_id), None))
            return removed

    def _remove_locked(self, video_id: int) -> int:
        if video_id not in self._videos:
            return 0
        removed = _remove(self._index, video_id)
        del self._videos[video_id]
        return removed

    def _touch(self) -> None:
        self._generation += 1
        self._updated_at = time.time()

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return checked_frame_vectors(vectors, self.config.dim)

    def _switch_to_approximate(
        self, ids: np.ndarray, vectors: np.ndarray, changes: list[tuple[str, int, np.ndarray | None]]
    ) -> None:
        """Train IVF off-lock on the snapshot, fill it, replay the `changes` logged meanwhile, swap.

        A `rebuild` that lands during training replaces the log, and this switch then gives up:
        the rebuilt index is newer than the snapshot.
        """
        try:
            index = _train_approximate(self.config, vectors)
            _add(index, vectors, ids)
            trained = len(vectors)
            del vectors
            if self._swap_in(index, changes, trained):
                log.info("frame index switched to %s at %d frames", _kind_of(index), index.ntotal)
        except BaseException:
            with self._lock:
                if self._pending is changes:
                    self._pending = None
            raise

    def _swap_in(self, index: Any, changes: list[tuple[str, int, np.ndarray | None]], trained: int) -> bool:
        """Replay the changes logged while `index` was built off-lock, then make it the live index.

        False (and nothing swapped) when a `rebuild` replaced the log meanwhile: its index is newer.
        """
        with self._lock:
            if self._pending is not changes:
                log.info("frame index training superseded by a rebuild")
                return False
            self._pending = None
            for _op, video_id, new_vectors in changes:
                _remove(index, video_id)
                if new_vectors is not None:  # an "add"
                    _add(index, new_vectors, pack_ids(video_id, np.arange(len(new_vectors))))
            self._index = index
            self._trained_frames = trained
            self._touch()
        return True

    def _retrain_if_grown_locked(self) -> None:
        """Start a background retraining when the IVF index has outgrown its training (lock held)."""
        growth = self.config.retrain_growth
        if (
            growth is None
            or self._pending is not None
            or self._trained_frames == 0
            or self._index.ntotal < growth * self._trained_frames
        ):
            return
        kind = _kind_of(self._index)
        if self.store is None and kind != "ivfflat":
            if not self._warned_no_store:
                log.warning("frame index outgrew its training but has no feature store to retrain from")
                self._warned_no_store = True
            return
        changes: list[tuple[str, int, np.ndarray | None]] = []
        self._pending = changes
        videos = dict(self._videos)
        exact = None if self.store is not None else _ivf_flat_contents(self._index)
        self._training = threading.Thread(
            target=self._retrain, args=(videos, exact, changes), name="faiss-retrain", daemon=True
        )
        self._training.start()

    def _retrain(
        self,
        videos: dict[int, int],
        exact: tuple[np.ndarray, np.ndarray] | None,
        changes: list[tuple[str, int, np.ndarray | None]],
    ) -> None:
        """Train a new IVF index for the current size off-lock and swap it in (a background thread)."""
        try:
            started = time.perf_counter()
            if exact is not None:
                ids, vectors = exact
            else:
                assert self.store is not None
                ids, vectors, _ = _store_vectors(self.store, videos, self.config.dim)
            index = _train_approximate(self.config, vectors)
            _add(index, vectors, ids)
            trained = len(vectors)
            del vectors
            if self._swap_in(index, changes, trained):
                log.info(
                    "frame index retrained: %d cells at %d frames in %.0f s",
                    faiss.extract_index_ivf(index).nlist,
                    trained,
                    time.perf_counter() - started,
                )
        except BaseException:
            log.exception("frame index retraining failed; the index keeps its cells")
            with self._lock:
                if self._pending is changes:
                    self._pending = None

    # -- queries -------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """k nearest frames of each query vector [N, D] -> (scores, video_ids, frame_ids), each [N, k].

        Scores are inner products (cosine for unit vectors; approximate under IVF-PQ). Slots
        without a result hold video and frame -1 and score -inf.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.config.dim:
            raise ValueError(f"queries must be [N, {self.config.dim}], got {queries.shape}")
        if k <= 0:
            raise ValueError("k must be positive")
        with self._lock:
            if self._index.ntotal == 0 or len(queries) == 0:
                scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
                labels = np.full((len(queries), k), -1, dtype=np.int64)
            else:
                scores, labels = _search(self._index, queries, k)
        scores = np.where(labels < 0, -np.inf, scores).astype(np.float32)
        videos, frames = unpack_ids(labels)
        return scores, videos, frames

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> IndexInfo:
        """Write the index and its JSON sidecar (`<path>.json`) atomically; returns what was saved.

        The index is serialised under the lock (a memory copy) and written outside it, so
        searches and adds wait only for the copy. The sidecar is written last and carries the
        index file's CRC-32, so a crash between the two files is detected at load.
        """
        path = Path(path)
        with self._save_lock:
            with self._lock:
                data = faiss.serialize_index(self._index)
                info = self.info()
                trained = self._trained_frames
            write_bytes_atomic(path, data.data)
            sidecar = {
                "format": FORMAT_TAG,
                "kind": info.kind,
                "dim": info.dim,
                "frames": info.frames,
                "videos": info.videos,
                "generation": info.generation,
                "updated_at": info.updated_at,
                "saved_at": time.time(),
                "frame_bits": FRAME_BITS,
                "trained_frames": trained,
                "crc32": f"{zlib.crc32(data.data):08x}",
            }
            write_bytes_atomic(_sidecar_path(path), json.dumps(sidecar, indent=1).encode())
            with self._lock:
                self._saved_generation = max(self._saved_generation, info.generation)
        return info

    @classmethod
    def load(
        cls, path: str | Path, config: IndexConfig | None = None, store: FeatureStorage | None = None
    ) -> FaissIndex:
        """Read an index saved by `save`; IndexLoadError when it is missing, torn or inconsistent.

        An IVF index that has outgrown its training starts retraining in the background (from
        `store`; see Growth in the module docstring)."""
        path = Path(path)
        sidecar_path = _sidecar_path(path)
        try:
            sidecar = json.loads(sidecar_path.read_text())
            data = np.fromfile(path, dtype=np.uint8)
        except FileNotFoundError as error:
            raise IndexLoadError(f"no saved index at {path}: {error.filename} is missing") from None
        except (ValueError, OSError) as error:
            raise IndexLoadError(f"saved index at {path} is unreadable: {error}") from None
        if sidecar.get("format") != FORMAT_TAG or sidecar.get("frame_bits") != FRAME_BITS:
            raise IndexLoadError(f"saved index at {path} has an unknown format: {sidecar.get('format')!r}")
        if f"{zlib.crc32(data.data):08x}" != sidecar.get("crc32"):
            raise IndexLoadError(f"saved index at {path} does not match its sidecar (interrupted save or damage)")
        try:
            index = faiss.deserialize_index(data)
        except RuntimeError as error:
            raise IndexLoadError(f"saved index at {path} cannot be parsed: {error}") from None
        config = config or IndexConfig(dim=int(sidecar["dim"]))
        if index.d != config.dim or index.ntotal != sidecar["frames"]:
            raise IndexLoadError(
                f"saved index at {path} holds {index.ntotal} vectors of dim {index.d}; "
                f"expected {sidecar['frames']} of dim {config.dim}"
            )
        if _kind_of(index) != "flat":
            ivf = faiss.extract_index_ivf(index)
            ivf.nprobe = nprobe_for(config, int(ivf.nlist))
        if isinstance(index, faiss.IndexRefine):  # saved with a refine part: the config sets its shortlist
            index.k_factor = max(1, config.refine_factor)
        self = cls(config, store)
        self._index = index
        self._videos = _counts(_all_ids(index))
        self._generation = self._saved_generation = int(sidecar.get("generation", 0))
        self._updated_at = float(sidecar.get("updated_at", time.time()))
        if _kind_of(index) != "flat":
            self._trained_frames = int(sidecar.get("trained_frames") or _trained_size_of(index))
            with self._lock:
                self._retrain_if_grown_locked()
        return self

    # -- derived from the feature store --------------------------------------------------------
    def rebuild(self, store: FeatureStorage, video_ids: Iterable[int] | None = None) -> int:
        """Replace the contents with the frame vectors of `video_ids` (default: every video in the store).

        Builds off-lock, then swaps; an IVF index is retrained for the current size. Videos
        whose features are missing are skipped. Returns the number of videos indexed.
        """
        ids, vectors, counts = _store_vectors(store, store.ids() if video_ids is None else video_ids, self.config.dim)
        approximate = len(vectors) >= self.config.approximate_threshold
        index = _train_approximate(self.config, vectors) if approximate else _new_flat(self.config.dim)
        if len(vectors):
            _add(index, vectors, ids)
        with self._lock:
            self._index = index
            self._videos = counts
            self._pending = None  # a retraining under way is superseded
            self._trained_frames = len(vectors) if approximate else 0
            self._touch()
        return len(counts)

    def reconcile(self, store: FeatureStorage, video_ids: Iterable[int] | None = None) -> tuple[int, int]:
        """Make the index hold exactly `video_ids` (default: the store's ids), reading only what differs.

        The cheap start-up repair after a crash: videos missing from the index are added from the
        store, videos the index holds but should not are removed. Returns (added, removed).
        """
        return reconcile_index(self, store, video_ids)


def _store_vectors(
    store: FeatureStorage, video_ids: Iterable[int], dim: int
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """(packed ids, frame vectors, video -> frames) of the videos' stored features; missing ones skipped."""
    ids_parts: list[np.ndarray] = []
    vector_parts: list[np.ndarray] = []
    counts: dict[int, int] = {}
    for video_id in video_ids:
        try:
            vectors = checked_frame_vectors(indexed_vectors(store, video_id), dim)
        except KeyError:
            continue
        ids_parts.append(pack_ids(int(video_id), np.arange(len(vectors))))
        vector_parts.append(vectors)
        counts[int(video_id)] = len(vectors)
    ids = np.concatenate(ids_parts) if ids_parts else np.empty(0, np.int64)
    vectors = np.concatenate(vector_parts) if vector_parts else np.empty((0, dim), np.float32)
    return ids, vectors, counts


def _ivf_flat_contents(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, exact vectors) held by an IVF-Flat index, copied (its cells store the raw float32 vectors)."""
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    assert invlists is not None
    id_parts, vector_parts = [np.empty(0, np.int64)], [np.empty((0, ivf.d), np.float32)]
    for cell in range(invlists.nlist):
        size = invlists.list_size(cell)
        if size:
            id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(cell), size).astype(np.int64))
            codes = faiss.rev_swig_ptr(invlists.get_codes(cell), size * invlists.code_size).copy()
            vector_parts.append(codes.view(np.float32).reshape(size, ivf.d))
    return np.concatenate(id_parts), np.concatenate(vector_parts)


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_sidecar(path: str | Path) -> IndexInfo | None:
    """The sidecar of a saved index without loading the index; None when there is none."""
    try:
        sidecar = json.loads(_sidecar_path(Path(path)).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return IndexInfo(
        kind=sidecar["kind"],
        dim=int(sidecar["dim"]),
        frames=int(sidecar["frames"]),
        videos=int(sidecar["videos"]),
        generation=int(sidecar["generation"]),
        updated_at=float(sidecar["updated_at"]),
    )


__all__ = [
    "FRAME_BITS",
    "MAX_FRAMES_PER_VIDEO",
    "MAX_VIDEO_ID",
    "VectorIndex",
    "IndexConfig",
    "IndexInfo",
    "IndexLoadError",
    "FaissIndex",
    "pack_ids",
    "read_sidecar",
    "unpack_ids",
]


def reconcile_index(
    index: VectorIndex, store: FeatureStorage, video_ids: Iterable[int] | None = None
) -> tuple[int, int]:
    """Make `index` hold exactly `video_ids` (default: the store's ids); (added, removed).

    Reads from the store only the videos the index lacks, so it is cheap after a crash.
    """
    wanted = set(store.ids() if video_ids is None else (int(v) for v in video_ids))
    present = set(index.video_ids())
    removed = sum(1 for video_id in present - wanted if index.remove(video_id))
    added = 0
    for video_id in sorted(wanted - present):
        try:
            vectors = indexed_vectors(store, video_id)
        except KeyError:  # deleted meanwhile
            continue
        index.add(video_id, vectors)
        added += 1
    return added, removed


def checked_frame_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """One video's frame vectors as float32 [N, dim], or ValueError saying what is wrong."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors must be [N, {dim}], got {vectors.shape}")
    if len(vectors) > MAX_FRAMES_PER_VIDEO:
        raise ValueError(f"a video may index at most {MAX_FRAMES_PER_VIDEO} frames, got {len(vectors)}")
    return vectors
