"""The frame index on Milvus: the same `VectorIndex` interface as FaissIndex, held by a Milvus
collection instead of this process's memory.

One URI reaches every deployment size: a local path opens milvus-lite inside this process (one
process per data directory), ``http://host:19530`` a standalone server or a cluster. With a
server, API replicas hold no index of their own: workers write vectors, every replica searches
the same collection, and a delete is one expression (`video_id == N`).

Rows. One per indexed frame: the primary key is the packed id FaissIndex uses
((video_id << FRAME_BITS) | frame), so results decode the same way; `video_id`, `frame` and
`frames` (the video's frame count) are scalar fields, so a delete, a count and `frames_of` are
filters instead of a scan of vectors. Replacing a video upserts its frames and then deletes the
frames past its new length, so a re-indexed video never drops out of search meanwhile.

Availability. Every call carries a timeout; a server that cannot be reached (or a call that
fails there) raises IndexUnavailable, which the API answers with 503 and a reason. The client
reconnects on the next call, and a collection found released (a restarted server) is loaded
again, so service resumes without a restart once Milvus is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from indexer.errors import IndexUnavailable
from indexer.variants import indexed_vectors
from indexer.vector_index import (
    FRAME_BITS,
    IndexInfo,
    checked_frame_vectors,
    pack_ids,
    reconcile_index,
    unpack_ids,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from indexer.feature_store import FeatureStorage

log = logging.getLogger(__name__)

T = TypeVar("T")

# Rows per insert: 4,096 frames of 512 float32 are 8 MB, well inside gRPC's 64 MB message limit.
INSERT_BATCH = 4096
# Milvus refuses a search limit (topk) above this.
MAX_LIMIT = 16_384
# `frames_of` answers from the counts the latest searches returned; this many are kept.
FRAMES_CACHE = 100_000
# Milvus error code for a collection that exists but is not loaded (a restarted server).
_NOT_LOADED = 101


@dataclass(frozen=True)
class MilvusConfig:
    """Where the collection lives and how it is indexed."""

    uri: str
    collection: str = "hapvr_frames"
    dim: int = 512
    # HNSW: no training step, so the first video is searchable at once and the index grows
    # without a rebuild; milvus-lite and every server build have it. IVF_FLAT, IVF_SQ8, IVF_PQ
    # (server) and DISKANN (server) are the choices past what HNSW's memory allows.
    index_type: str = "HNSW"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef: int = 128  # search breadth; raised to k when k is larger
    nlist: int = 1024  # IVF kinds
    nprobe: int = 32
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.uri:
            raise ValueError("a Milvus URI is needed (a local path for milvus-lite, or http://host:19530)")
        if min(self.dim, self.hnsw_m, self.hnsw_ef_construction, self.hnsw_ef, self.nlist, self.nprobe) <= 0:
            raise ValueError("dim and the index parameters must be positive")

    @property
    def is_local(self) -> bool:
        """A path (milvus-lite in this process) rather than a server address."""
        return "://" not in self.uri

    @property
    def place(self) -> str:
        """Where the collection is, for messages: the server address or the lite file's name."""
        return self.uri if not self.is_local else f"milvus-lite at {Path(self.uri).name}"


class MilvusIndex:
    """A `VectorIndex` over one Milvus collection; see the module docstring. Thread-safe."""

    def __init__(self, config: MilvusConfig) -> None:
        self.config = config
        self._lock = threading.Lock()  # guards the client and the cache, not the calls
        self._client: MilvusClient | None = None
        self._frames: OrderedDict[int, int] = OrderedDict()
        self._generation = 0
        self._updated_at = time.time()
        self.created = False  # whether this object created the collection (it did not exist)

    # -- connection ------------------------------------------------------------------------------
    def _connect(self) -> MilvusClient:
        with self._lock:
            if self._client is not None:
                return self._client
        from pymilvus import MilvusClient

        uri = str(Path(self.config.uri).expanduser().resolve()) if self.config.is_local else self.config.uri
        if self.config.is_local:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        client = MilvusClient(uri, timeout=self.config.timeout_s)
        self._ensure_collection(client)
        with self._lock:
            if self._client is None:
                self._client = client
            return self._client

    def _drop_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass

    def _call(self, what: str, operation: Callable[[MilvusClient], T]) -> T:
        """Run one operation; a released collection is loaded and the operation tried once more.
        Any other failure drops the client (the next call reconnects) and raises IndexUnavailable."""
        from pymilvus.exceptions import MilvusException

        for attempt in range(2):
            try:
                client = self._connect()
                return operation(client)
            except MilvusException as error:
                if attempt == 0 and getattr(error, "code", None) == _NOT_LOADED and self._client is not None:
                    log.info("Milvus collection %s was released; loading it", self.config.collection)
                    try:
                        self._client.load_collection(self.config.collection, timeout=self.config.timeout_s)
                        continue
                    except MilvusException as load_error:
                        error = load_error
                self._drop_client()
                raise IndexUnavailable(
                    f"the vector index ({self.config.place}) is unavailable ({what}): {getattr(error, 'message', error)}"
                ) from error
            except (OSError, RuntimeError) as error:
                self._drop_client()
                raise IndexUnavailable(
                    f"the vector index ({self.config.place}) is unavailable ({what}): {error}"
                ) from error
        raise AssertionError("unreachable")

    def _ensure_collection(self, client: MilvusClient) -> None:
        name, timeout = self.config.collection, self.config.timeout_s
        if client.has_collection(name, timeout=timeout):
            described = client.describe_collection(name, timeout=timeout)
            dims = [field.get("params", {}).get("dim") for field in described["fields"] if field["name"] == "vector"]
            if not dims or int(dims[0]) != self.config.dim:
                raise ValueError(
                    f"Milvus collection {name} holds {dims[0] if dims else 'no'}-d vectors, not {self.config.dim}-d; "
                    "choose another HAPVR_MILVUS_COLLECTION or drop it"
                )
            client.load_collection(name, timeout=timeout)
            return
        from pymilvus import DataType

        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("video_id", DataType.INT64)
        schema.add_field("frame", DataType.INT32)
        schema.add_field("frames", DataType.INT32)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.config.dim)
        index_params = client.prepare_index_params()
        index_params.add_index(
            "vector", index_type=self.config.index_type, metric_type="IP", params=self._build_params()
        )
        # Deletes and counts filter on video_id. milvus-lite has only INVERTED scalar indexes;
        # STL_SORT serves numbers on every server version (INVERTED only from 2.4 on).
        index_params.add_index("video_id", index_type="INVERTED" if self.config.is_local else "STL_SORT")
        # Strong: a video is searchable as soon as its add returns (the job then marks it ready).
        client.create_collection(
            name, schema=schema, index_params=index_params, consistency_level="Strong", timeout=timeout
        )
        self.created = True
        log.info("created Milvus collection %s (%s, %d-d)", name, self.config.index_type, self.config.dim)

    def _build_params(self) -> dict[str, Any]:
        kind = self.config.index_type.upper()
        if kind == "HNSW":
            return {"M": self.config.hnsw_m, "efConstruction": self.config.hnsw_ef_construction}
        if kind.startswith("IVF"):
            params: dict[str, Any] = {"nlist": self.config.nlist}
            if kind == "IVF_PQ":
                params.update(m=self.config.dim // 8, nbits=8)
            return params
        return {}

    def _search_params(self, k: int) -> dict[str, Any]:
        kind = self.config.index_type.upper()
        if kind == "HNSW":
            return {"metric_type": "IP", "params": {"ef": max(self.config.hnsw_ef, k)}}
        if kind.startswith("IVF"):
            return {"metric_type": "IP", "params": {"nprobe": self.config.nprobe}}
        return {"metric_type": "IP"}

    def close(self) -> None:
        self._drop_client()

    # -- state -----------------------------------------------------------------------------------
    def _count(self, filter_expression: str) -> int:
        rows = self._call(
            "count",
            lambda client: client.query(
                self.config.collection,
                filter=filter_expression,
                output_fields=["count(*)"],
                timeout=self.config.timeout_s,
            ),
        )
        return int(rows[0]["count(*)"]) if rows else 0

    @property
    def kind(self) -> str:
        return f"milvus-{self.config.index_type.lower()}"

    @property
    def num_frames(self) -> int:
        return self._count("")

    @property
    def num_videos(self) -> int:
        return self._count("frame == 0")

    def __len__(self) -> int:
        return self.num_videos

    def __contains__(self, video_id: object) -> bool:
        if isinstance(video_id, bool) or not isinstance(video_id, (int, np.integer)):
            return False
        return self._count(f"video_id == {int(video_id)} and frame == 0") > 0

    def video_ids(self) -> set[int]:
        def collect(client: MilvusClient) -> set[int]:
            found: set[int] = set()
            iterator = client.query_iterator(
                self.config.collection,
                batch_size=16_384,
                filter="frame == 0",
                output_fields=["video_id"],
                timeout=self.config.timeout_s,
            )
            try:
                while batch := iterator.next():
                    found.update(int(row["video_id"]) for row in batch)
            finally:
                iterator.close()
            return found

        return self._call("list videos", collect)

    def frames_of(self, video_id: int) -> int:
        """Frames indexed for a video: from the counts recent searches returned, else one query."""
        video_id = int(video_id)
        with self._lock:
            if video_id in self._frames:
                return self._frames[video_id]
        rows = self._call(
            "frames of",
            lambda client: client.query(
                self.config.collection,
                filter=f"video_id == {video_id} and frame == 0",
                output_fields=["frames"],
                timeout=self.config.timeout_s,
            ),
        )
        frames = int(rows[0]["frames"]) if rows else 0
        self._remember({video_id: frames})
        return frames

    def _remember(self, counts: dict[int, int]) -> None:
        with self._lock:
            for video_id, frames in counts.items():
                self._frames[video_id] = frames
                self._frames.move_to_end(video_id)
            while len(self._frames) > FRAMES_CACHE:
                self._frames.popitem(last=False)

    def _forget(self, video_id: int) -> None:
        with self._lock:
            self._frames.pop(video_id, None)

    @property
    def generation(self) -> int:
        """Changes made through this object (other writers of the collection are not counted)."""
        return self._generation

    def info(self) -> IndexInfo:
        return IndexInfo(
            kind=self.kind,
            dim=self.config.dim,
            frames=self.num_frames,
            videos=self.num_videos,
            generation=self._generation,
            updated_at=self._updated_at,
        )

    def _touch(self) -> None:
        with self._lock:
            self._generation += 1
            self._updated_at = time.time()

    # -- changes ---------------------------------------------------------------------------------
    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return checked_frame_vectors(vectors, self.config.dim)

    def add(self, video_id: int, vectors: np.ndarray) -> None:
        """Index a video's frame vectors [T, D]; a video already present is replaced."""
        vectors = self._check_vectors(vectors)
        video_id = int(video_id)
        ids = pack_ids(video_id, np.arange(len(vectors)))
        count = len(vectors)
        name, timeout = self.config.collection, self.config.timeout_s

        def write(client: MilvusClient) -> None:
            for start in range(0, count, INSERT_BATCH):
                rows = [
                    {"id": int(ids[row]), "video_id": video_id, "frame": row, "frames": count, "vector": vectors[row]}
                    for row in range(start, min(start + INSERT_BATCH, count))
                ]
                client.upsert(name, rows, timeout=timeout)
            # Frames past the new length belong to an earlier, longer version of the video.
            client.delete(name, filter=f"video_id == {video_id} and frame >= {count}", timeout=timeout)

        self._call("add", write)
        self._remember({video_id: count})
        self._touch()

    def remove(self, video_id: int) -> int:
        """Remove every frame of a video (one delete expression); returns how many there were."""
        video_id = int(video_id)
        present = self._count(f"video_id == {video_id}")
        if present:
            self._call(
                "remove",
                lambda client: client.delete(
                    self.config.collection, filter=f"video_id == {video_id}", timeout=self.config.timeout_s
                ),
            )
            self._touch()
        self._forget(video_id)
        return present

    # -- queries ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """k nearest frames of each query vector [N, D], all in one request -> (scores, video_ids,
        frame_ids), each [N, k]; slots without a result hold -1 and score -inf (as FaissIndex)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.config.dim:
            raise ValueError(f"queries must be [N, {self.config.dim}], got {queries.shape}")
        if k <= 0:
            raise ValueError("k must be positive")
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        labels = np.full((len(queries), k), -1, dtype=np.int64)
        if len(queries) == 0:
            return scores, labels, labels.copy()
        limit = min(k, MAX_LIMIT)
        hits = self._call(
            "search",
            lambda client: client.search(
                self.config.collection,
                data=list(queries),
                limit=limit,
                output_fields=["frames"],
                search_params=self._search_params(limit),
                timeout=self.config.timeout_s,
            ),
        )
        counts: dict[int, int] = {}
        for row, found in enumerate(hits):
            for column, hit in enumerate(found):
                labels[row, column] = int(hit["id"])
                scores[row, column] = float(hit["distance"])
                counts[int(hit["id"]) >> FRAME_BITS] = int(hit["entity"]["frames"])
        self._remember(counts)
        videos, frames = unpack_ids(labels)
        return scores, videos, frames

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> IndexInfo:
        """Milvus keeps its own data: seal what was written (`path` is FaissIndex's and unused)."""
        self._call("flush", lambda client: client.flush(self.config.collection, timeout=self.config.timeout_s))
        return self.info()

    @classmethod
    def load(cls, config: MilvusConfig) -> MilvusIndex | None:
        """The collection as it is, or None when it had to be created (a first start: the caller
        fills it from the feature store). Raises IndexUnavailable when Milvus cannot be reached."""
        index = cls(config)
        index._call("open", lambda client: None)
        return None if index.created else index

    def rebuild(self, store: FeatureStorage, video_ids: Iterable[int] | None = None) -> int:
        """Replace the contents with the frame vectors of `video_ids` (default: the store's).

        The collection is dropped and made again, then filled with plain inserts of INSERT_BATCH
        rows across videos (nothing to replace in a new collection): one request per batch instead
        of an upsert and a delete per video.
        """
        self._call("drop", lambda client: client.drop_collection(self.config.collection, timeout=self.config.timeout_s))
        self._drop_client()  # the next call creates the collection again
        with self._lock:
            self._frames.clear()
        rows: list[dict[str, Any]] = []
        count = 0

        def flush_rows() -> None:
            batch = list(rows)
            rows.clear()
            if batch:
                self._call(
                    "rebuild",
                    lambda client: client.insert(self.config.collection, batch, timeout=self.config.timeout_s),
                )

        for video_id in store.ids() if video_ids is None else video_ids:
            try:
                vectors = self._check_vectors(indexed_vectors(store, video_id))
            except KeyError:
                continue
            ids = pack_ids(int(video_id), np.arange(len(vectors)))
            rows.extend(
                {
                    "id": int(ids[row]),
                    "video_id": int(video_id),
                    "frame": row,
                    "frames": len(vectors),
                    "vector": vectors[row],
                }
                for row in range(len(vectors))
            )
            count += 1
            if len(rows) >= INSERT_BATCH:
                flush_rows()
        flush_rows()
        self._touch()
        return count

    def reconcile(self, store: FeatureStorage, video_ids: Iterable[int] | None = None) -> tuple[int, int]:
        """Make the collection hold exactly `video_ids` (default: the store's ids); (added, removed)."""
        return reconcile_index(self, store, video_ids)


__all__ = ["MilvusConfig", "MilvusIndex"]
