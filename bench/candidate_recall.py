"""Candidate recall of the frame index against exhaustive search, over the search's own query vectors.

For each query, the search's candidate stage (SearchEngine.candidate_votes) runs once over the
real index through a RecordingIndex, which keeps the frame vectors and neighbour count it was
asked for. The same vectors are then searched exhaustively (exact inner product over every
stored frame vector, streamed from the feature store in blocks, one pass for all queries),
the exact neighbours are aggregated into votes by the same function. recall@C is the share of
the exact top-C videos that the approximate top-C holds; 1-recall@C, whether it holds the exact
best one (FAISS's names for the two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import faiss
import numpy as np
from tqdm import tqdm

from indexer.feature_store import FeatureStorage
from indexer.search import aggregate_votes
from indexer.vector_index import VectorIndex


class RecordingIndex:
    """A VectorIndex that forwards every call and keeps a copy of what each search asked."""

    def __init__(self, inner: VectorIndex) -> None:
        self.inner = inner
        self.searches: list[tuple[np.ndarray, int]] = []  # (query vectors [N, D], k)

    def add(self, video_id: int, vectors: np.ndarray) -> None:
        self.inner.add(video_id, vectors)

    def remove(self, video_id: int) -> int:
        return self.inner.remove(video_id)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.searches.append((np.array(queries, dtype=np.float32), k))
        return self.inner.search(queries, k)

    def frames_of(self, video_id: int) -> int:
        return self.inner.frames_of(video_id)

    @property
    def num_frames(self) -> int:
        return self.inner.num_frames

    @property
    def num_videos(self) -> int:
        return self.inner.num_videos

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.inner


@dataclass(frozen=True)
class CandidateQuery:
    """One query's candidate stage: its votes from the index under test, and what it asked the index."""

    votes: dict[int, float]
    vectors: np.ndarray  # [N, D]
    k: int  # neighbours per vector
    exclude: frozenset[int]


def top_videos(votes: dict[int, float], count: int) -> set[int]:
    """The `count` best-voted videos, ties broken by id as SearchEngine ranks them."""
    return {video for video, _ in sorted(votes.items(), key=lambda item: (-item[1], item[0]))[:count]}


def frame_blocks(
    store: FeatureStorage, video_ids: Iterable[int], block_frames: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame vectors [n, D], the video id of each row) over the videos' stored frames, about block_frames at a time."""
    vectors: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    held = 0
    for video_id in video_ids:
        frames = store.get(video_id).frame_vectors
        vectors.append(frames)
        owners.append(np.full(len(frames), video_id, dtype=np.int64))
        held += len(frames)
        if held >= block_frames:
            yield np.concatenate(vectors), np.concatenate(owners)
            vectors, owners, held = [], [], 0
    if vectors:
        yield np.concatenate(vectors), np.concatenate(owners)


def exact_neighbours(
    store: FeatureStorage, video_ids: Sequence[int], queries: np.ndarray, k: int, block_frames: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest stored frames (inner product) of each query -> (scores, video ids), each [N, k], best first.

    Slots past the number of stored frames hold video -1 and score -inf, as FaissIndex.search.
    """
    with tqdm(total=len(video_ids), desc="exhaustive search", unit="video", mininterval=5) as progress:
        blocks = frame_blocks(store, video_ids, block_frames)
        return nearest_in_blocks(blocks, queries, k, lambda owners: progress.update(len(np.unique(owners))))


def nearest_in_blocks(
    blocks: Iterable[tuple[np.ndarray, np.ndarray]],
    queries: np.ndarray,
    k: int,
    on_block: Callable[[np.ndarray], object] = lambda owners: None,
) -> tuple[np.ndarray, np.ndarray]:
    """exact_neighbours over (frame vectors [n, D], the video id of each row) blocks from any source."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    for vectors, owners in blocks:
        scores, rows = faiss.knn(queries, vectors, min(k, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, np.where(rows < 0, -1, owners[np.maximum(rows, 0)]))
        on_block(owners)
    heap.finalize()
    return np.where(heap.I < 0, -np.inf, heap.D).astype(np.float32), heap.I


@dataclass(frozen=True)
class Recall:
    """One query's candidate recall against exhaustive search."""

    at_c: float  # |approximate top C ∩ exact top C| / |exact top C|
    best_found: bool  # the exact best candidate is in the approximate top C


def candidate_recall(
    store: FeatureStorage, video_ids: Sequence[int], queries: Sequence[CandidateQuery], count: int
) -> list[Recall]:
    """Recall of each query that has any exact candidate, with `count` candidates (C)."""
    if not queries:
        return []
    k = max(query.k for query in queries)
    return recalls_against(
        queries, *exact_neighbours(store, video_ids, np.concatenate([q.vectors for q in queries]), k), count
    )


def recalls_against(
    queries: Sequence[CandidateQuery], scores: np.ndarray, videos: np.ndarray, count: int
) -> list[Recall]:
    """candidate_recall given the exact neighbours (scores, video ids) of all the queries' vectors, in order."""
    recalls = []
    start = 0
    for query in queries:
        rows = slice(start, start + len(query.vectors))
        start = rows.stop
        exact = aggregate_votes(scores[rows, : query.k], videos[rows, : query.k], query.exclude)
        if not exact:
            continue
        truth, found = top_videos(exact, count), top_videos(query.votes, count)
        best = min(exact.items(), key=lambda item: (-item[1], item[0]))[0]
        recalls.append(Recall(at_c=len(found & truth) / len(truth), best_found=best in found))
    return recalls
