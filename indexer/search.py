"""Search: FAISS candidates, then the exact HAP-VR re-rank (ARCHITECTURE section 7).

1. Candidates. Every query frame asks the frame index for its k' nearest frames. Per video and
   query frame we keep the best hit; a video's vote is the sum over query frames of that best
   score, where a frame that did not reach the video counts its own k'-th score (an upper bound
   of what it missed). Divided by the query length, the vote estimates the query-to-target
   Chamfer similarity of frame vectors, which is the first level of the HAP-VR hierarchy
   itself: it rewards a video that matches many query frames well, not one that matches a
   single frame perfectly (a black frame, a logo card), and it needs no tuning. Excluded and
   not-allowed videos are dropped before the top C are taken, so they never take a slot.
2. Re-rank. The top C videos' region features come from the feature store and are compared
   with the query by the similarity network, in chunks of similar length (little padding,
   bounded memory), under torch inference mode.
3. Segments. Matched time ranges come from each hit's frame-to-frame matrix F.

A flipped copy of the query (see VideoEmbedder.embed(flip=True)) can be passed as a variant:
each video keeps its best score over the variants, which restores recall on mirrored copies at
twice the query cost (section 10).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from indexer.feature_store import CorruptFeaturesError, FeatureStorage, MissingFeaturesError
from indexer.features import VideoFeatures
from model.similarity.network import HapVRSimilarity, stretch_to_min_frames, stretched_frame_index, topk_chamfer
from model.similarity.segments import Segment, matched_segments

if TYPE_CHECKING:
    from indexer.vector_index import FrameIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of one search; the defaults hold a p95 under 150 ms at 1,000 one-minute videos on 2 cores."""

    candidates: int = 100  # C: videos re-ranked exactly
    neighbours_per_frame: int = 64  # k': FAISS neighbours per query frame
    max_query_frames: int = 512  # longer queries are subsampled evenly for the candidate stage only
    segment_threshold: float = 0.5  # F value a matched frame pair must reach (frames of copies sit well above)
    # Bound on the region-similarity tensor of one re-rank chunk (query regions x target regions), in elements.
    chunk_elements: int = 8_000_000
    # bfloat16: the re-rank under CPU autocast, faster where the CPU has bf16 dot products
    # (scores then move by about 1e-2); float32 is exact.
    precision: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.neighbours_per_frame < 1 or self.max_query_frames < 1:
            raise ValueError("candidates, neighbours_per_frame and max_query_frames must be positive")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be float32 or bfloat16, got {self.precision!r}")


@dataclass(frozen=True)
class SearchHit:
    video_id: int
    score: float
    rank: int  # 1-based
    segments: list[Segment] = field(default_factory=list)


@dataclass
class SearchResult:
    """Hits plus what a caller may log or export: the candidates' votes and per-stage timings."""

    hits: list[SearchHit]
    candidates: list[tuple[int, float]]  # (video id, vote estimate of the frame Chamfer), best first
    timings: dict[str, float]  # seconds: candidates, load, rerank, segments, total
    skipped: list[int] = field(default_factory=list)  # candidates whose features vanished or are damaged


AllowedFilter = Callable[[Iterable[int]], set[int]]


class SearchEngine:
    """Query features in, ranked similar videos out. Stateless besides its parts: safe across threads."""

    def __init__(
        self,
        store: FeatureStorage,
        index: FrameIndex,
        similarity: HapVRSimilarity,
        config: SearchConfig | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.similarity = similarity.eval()
        self.config = config or SearchConfig()

    def search(
        self,
        query: VideoFeatures,
        *,
        k: int = 20,
        min_score: float | None = None,
        candidates: int | None = None,
        exclude: Collection[int] = (),
        is_allowed: AllowedFilter | None = None,
        variants: Sequence[VideoFeatures] = (),
    ) -> list[SearchHit]:
        """The k best videos for `query`, best first; see `search_detailed`."""
        return self.search_detailed(
            query,
            k=k,
            min_score=min_score,
            candidates=candidates,
            exclude=exclude,
            is_allowed=is_allowed,
            variants=variants,
        ).hits

    def search_detailed(
        self,
        query: VideoFeatures,
        *,
        k: int = 20,
        min_score: float | None = None,
        candidates: int | None = None,
        exclude: Collection[int] = (),
        is_allowed: AllowedFilter | None = None,
        variants: Sequence[VideoFeatures] = (),
    ) -> SearchResult:
        """Search with timings. `exclude` ids and ids `is_allowed` rejects never appear in the result.

        `candidates` (default config.candidates) is raised to k if smaller. `variants` are other
        versions of the query (a flipped copy), each video keeping its best score.
        """
        if k < 1:
            raise ValueError("k must be positive")
        count = max(k, candidates or self.config.candidates)
        queries = [query, *variants]
        started = time.perf_counter()
        timings: dict[str, float] = {}

        votes = self._votes(queries, set(int(v) for v in exclude))
        ranked = self._filter(votes, is_allowed)[:count]
        timings["candidates"] = time.perf_counter() - started

        mark = time.perf_counter()
        loaded, skipped = self._load([video_id for video_id, _ in ranked])
        timings["load"] = time.perf_counter() - mark

        mark = time.perf_counter()
        scored: dict[int, tuple[float, int, np.ndarray]] = {}  # video -> (score, variant, F)
        for variant_index, variant in enumerate(queries):
            for video_id, score, frame_sim in self._rerank(variant, loaded):
                if video_id not in scored or score > scored[video_id][0]:
                    scored[video_id] = (score, variant_index, frame_sim)
        timings["rerank"] = time.perf_counter() - mark

        mark = time.perf_counter()
        order = sorted(scored, key=lambda video_id: (-scored[video_id][0], video_id))
        if min_score is not None:
            order = [video_id for video_id in order if scored[video_id][0] >= min_score]
        hits = []
        for rank, video_id in enumerate(order[:k], start=1):
            score, variant_index, frame_sim = scored[video_id]
            segments = matched_segments(
                frame_sim,
                queries[variant_index].timestamps,
                loaded[video_id].timestamps,
                self.config.segment_threshold,
            )
            hits.append(SearchHit(video_id=video_id, score=score, rank=rank, segments=segments))
        timings["segments"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        return SearchResult(hits=hits, candidates=ranked, timings=timings, skipped=skipped)

    # -- stage 1: candidates ---------------------------------------------------------------------
    def _votes(self, queries: Sequence[VideoFeatures], exclude: set[int]) -> dict[int, float]:
        """Per video, the best vote over the query variants (see the module docstring)."""
        best: dict[int, float] = {}
        for query in queries:
            for video_id, vote in self.candidate_votes(query, exclude).items():
                if vote > best.get(video_id, -np.inf):
                    best[video_id] = vote
        return best

    def candidate_votes(self, query: VideoFeatures, exclude: Collection[int] = ()) -> dict[int, float]:
        """video id -> estimate of the query-to-video frame Chamfer similarity, for every video hit."""
        vectors = query.frame_vectors
        if len(vectors) > self.config.max_query_frames:
            rows = np.linspace(0, len(vectors) - 1, self.config.max_query_frames).round().astype(np.int64)
            vectors = vectors[np.unique(rows)]
        # Excluded videos (the query itself) may fill a frame's nearest neighbours; ask for more.
        crowd = sum(self.index.frames_of(int(video_id)) for video_id in exclude)
        neighbours = self.config.neighbours_per_frame + min(crowd, 1024)
        scores, video_ids, _ = self.index.search(vectors, neighbours)
        return aggregate_votes(scores, video_ids, exclude)

    @staticmethod
    def _filter(votes: dict[int, float], is_allowed: AllowedFilter | None) -> list[tuple[int, float]]:
        if is_allowed is not None and votes:
            allowed = {int(v) for v in is_allowed(set(votes))}
            votes = {video_id: vote for video_id, vote in votes.items() if video_id in allowed}
        return sorted(votes.items(), key=lambda item: (-item[1], item[0]))

    # -- stage 2: exact re-rank ------------------------------------------------------------------
    def _load(self, video_ids: list[int]) -> tuple[dict[int, VideoFeatures], list[int]]:
        loaded: dict[int, VideoFeatures] = {}
        skipped: list[int] = []
        for video_id in video_ids:
            try:
                loaded[video_id] = self.store.get(video_id)
            except MissingFeaturesError:
                skipped.append(video_id)  # deleted between the index lookup and now
            except CorruptFeaturesError as error:
                log.error("search skips a candidate: %s", error)
                skipped.append(video_id)
        return loaded, skipped

    def _rerank(
        self, query: VideoFeatures, targets: dict[int, VideoFeatures]
    ) -> Iterable[tuple[int, float, np.ndarray]]:
        """(video id, exact score, F [Tq, Tt] on the original frames) for each target."""
        if not targets:
            return
        bfloat16 = self.config.precision == "bfloat16"
        min_frames = self.similarity.config.min_frames
        query_regions = torch.from_numpy(query.regions).float()
        query_rows = stretched_frame_index(query.num_frames, min_frames)
        per_pair = len(query_rows) * query.num_regions**2  # region similarities per target frame
        by_length = sorted(targets, key=lambda video_id: (targets[video_id].num_frames, video_id))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            for chunk in _chunks(by_length, targets, per_pair, self.config.chunk_elements, min_frames):
                regions = [torch.from_numpy(targets[video_id].regions).float() for video_id in chunk]
                longest = max(max(len(r), min_frames) for r in regions)
                if longest * per_pair > self.config.chunk_elements:
                    outputs = [self._compare_tiled(query_regions, regions[0])]
                else:
                    output = self.similarity.one_to_many(query_regions, regions)
                    outputs = [(output.score[i], output.frame_sim[i]) for i in range(len(chunk))]
                for video_id, (score, frame_sim) in zip(chunk, outputs):
                    target_cols = stretched_frame_index(targets[video_id].num_frames, min_frames)
                    matrix = frame_sim[: len(query_rows), : len(target_cols)].float().numpy()
                    yield video_id, float(score), _unstretch(matrix, query_rows, target_cols)

    def _compare_tiled(self, query: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One long pair: F built from query tiles (rows of F are independent), then the network's
        comparator and video-level TopK-Chamfer, exactly as `HapVRSimilarity.compare` does them."""
        net = self.similarity
        query = stretch_to_min_frames(query, net.config.min_frames)
        target = stretch_to_min_frames(target, net.config.min_frames)[None]
        rows_per_tile = max(1, self.config.chunk_elements // (len(target[0]) * query.shape[1] ** 2))
        frame_sim = torch.cat(
            [
                net.frame_similarity(query[start : start + rows_per_tile][None], target)[0]
                for start in range(0, len(query), rows_per_tile)
            ],
            dim=1,
        )
        mask = torch.ones_like(frame_sim, dtype=torch.bool)
        if net.comparator is None:
            video_sim, video_mask = frame_sim, mask
        else:
            raw, video_mask = net.comparator(frame_sim, mask)
            video_sim = torch.nn.functional.hardtanh(raw)
        rows, cols = video_mask.any(dim=2), video_mask.any(dim=1)
        score = topk_chamfer(video_sim, rows, cols, net.config.rho_v)
        if net.config.symmetric:
            score = (score + topk_chamfer(video_sim.transpose(1, 2), cols, rows, net.config.rho_v)) / 2
        return score[0], frame_sim[0]


def aggregate_votes(scores: np.ndarray, video_ids: np.ndarray, exclude: Collection[int] = ()) -> dict[int, float]:
    """FAISS results [N, k'] (rows sorted best first) -> video id -> mean over rows of max(best hit, row floor).

    The row floor is the row's last valid score: a video a row did not reach scored at most that.
    """
    valid = video_ids >= 0
    if exclude:
        valid &= ~np.isin(video_ids, np.fromiter(exclude, dtype=np.int64))
    rows_with_hits = valid.any(axis=1)
    if not rows_with_hits.any():
        return {}
    count = len(scores)
    # The k'-th score of every row (before exclusion: an excluded hit still bounds the others).
    in_range = video_ids >= 0
    last = np.where(in_range.any(axis=1), in_range.sum(axis=1) - 1, 0)
    floor = np.where(in_range.any(axis=1), scores[np.arange(count), last], 0.0).astype(np.float64)
    floor = np.maximum(floor, 0.0)
    rows, cols = np.nonzero(valid)
    hit_videos = video_ids[rows, cols]
    unique_videos, video_index = np.unique(hit_videos, return_inverse=True)
    # Rows are sorted best first, so the first occurrence of (row, video) is its best hit.
    pair = rows.astype(np.int64) * len(unique_videos) + video_index
    first_pair, first_at = np.unique(pair, return_index=True)
    excess = np.maximum(scores[rows[first_at], cols[first_at]].astype(np.float64) - floor[rows[first_at]], 0.0)
    gains = np.bincount(first_pair % len(unique_videos), weights=excess, minlength=len(unique_videos))
    base = floor.sum()
    return {int(video): float((base + gain) / count) for video, gain in zip(unique_videos, gains)}


def _chunks(
    ordered: list[int], targets: dict[int, VideoFeatures], per_frame: int, budget: int, min_frames: int
) -> Iterable[list[int]]:
    """Groups of targets sorted by length whose padded batch keeps the region tensor within budget."""
    chunk: list[int] = []
    for video_id in ordered:
        length = max(targets[video_id].num_frames, min_frames)
        # Sorted by length, so the newcomer is the longest: the padded size is (len + 1) * length.
        if chunk and (len(chunk) + 1) * length * per_frame > budget:
            yield chunk
            chunk = []
        chunk.append(video_id)
    if chunk:
        yield chunk


def _unstretch(matrix: np.ndarray, rows: list[int], cols: list[int]) -> np.ndarray:
    """F over stretched frames -> F over the original frames (a short video's repeated rows collapse)."""
    if len(rows) != len(set(rows)):
        matrix = matrix[np.unique(rows, return_index=True)[1]]
    if len(cols) != len(set(cols)):
        matrix = matrix[:, np.unique(cols, return_index=True)[1]]
    return matrix
