"""Search: FAISS candidates, then the exact HAP-VR re-rank (ARCHITECTURE section 7).

1. Candidates. Every query frame asks the frame index for its k' nearest frames. Per video and
   query frame we keep the best hit; a video's vote is the sum over query frames of that best
   score, where a frame that did not reach the video counts its own k'-th score (an upper bound
   of what it missed). Divided by the query length, the vote estimates the query-to-target
   Chamfer similarity of frame vectors, which is the first level of the HAP-VR hierarchy
   itself: it rewards a video that matches many query frames well, not one that matches a
   single frame perfectly (a black frame, a logo card), and it needs no tuning. Excluded and
   not-allowed videos are dropped before the top C are taken, so they never take a slot.
2. Re-rank. The top C videos (fewer for long queries: `rerank_frame_pairs` bounds the work)
   are read from the feature store and compared with the query exactly: the region-level
   Chamfer matrix F comes from one GEMM over the candidates' frames laid end to end (no
   padding, bounded memory), then the similarity network's video-level step (comparator when
   trained, video-level TopK-Chamfer) scores each candidate, under torch inference mode.
3. Alignment. The same GEMM also gives F the other way round (target frame against query
   frame); the mean of the two is the symmetric F, which the network's video-level step scores
   once in an orientation fixed by the pair, not by which video is the query (so one pass
   gives a symmetric score), and which, on the cosine scale, the alignment
   (model.similarity.alignment) reads the copied segments from. The published score is the
   shipped calibration (model.similarity.calibration) of the alignment's strength x coverage
   and the network's own score, with a tier beside it; the network's score stays available as
   `raw_score` and breaks ties.

A flipped copy of the query (see VideoEmbedder.embed(flip=True)) can be passed as a variant:
each video keeps its best score over the variants, which restores recall on mirrored copies at
twice the query cost (section 10). The query's inner window (picture-in-picture, bars) is passed
the same way. On the indexed side, a candidate with a stored window (indexer.variants) is
re-ranked against both its own features and its window's, keeping the better: the window's
frames keep their own times in the video (a window may show late), so the ranges stay on the
video's time axis.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from indexer.feature_store import CorruptFeaturesError, FeatureStorage, MissingFeaturesError
from model.features import VideoFeatures
from model.similarity.alignment import AlignmentConfig, PairAlignment, Side, align_pairs
from model.similarity.calibration import Calibration, Tier, shipped_calibration
from model.similarity.network import HapVRSimilarity, stretched_frame_index
from model.similarity.segments import Segment, cosine_scaled
from model.workspace import workspace

if TYPE_CHECKING:
    from indexer.vector_index import VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of one search (bench/bench_search.py measures the defaults; results in bench/results/search.md)."""

    candidates: int = 100  # C: videos re-ranked exactly (at most; see rerank_frame_pairs)
    neighbours_per_frame: int = 64  # k': FAISS neighbours per query frame, at least
    # A search for k videos asks each query frame for about k videos' worth of frames (k times
    # the mean frames per indexed video), up to this cap: with only 64, an original with 25
    # re-uploads of 8 frames each loses copies before the re-rank ever sees them.
    max_neighbours_per_frame: int = 2048
    # Longer queries are subsampled evenly for the candidate stage only (the re-rank sees every
    # frame): 64 frames keep a flat search of 20k frames near 20 ms on 2 cores, and shots last
    # several seconds, so a long query still votes with every scene.
    max_query_frames: int = 64
    # Re-rank cost is query frames x candidate frames x 81 region pairs x 512 x 2 flops: 150k
    # frame pairs are about 12 GFLOP, ~100 ms on 2 cores in float32. Candidates are taken in vote
    # order until the budget is spent (never fewer than k); None re-ranks all C whatever it costs.
    rerank_frame_pairs: int | None = 150_000
    # Copied segments and the pair score (model.similarity.alignment); its threshold is the F
    # value a matched frame pair must reach (model.similarity.segments.SEGMENT_THRESHOLD).
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    # Bound on one re-rank GEMM's output (query regions x target regions), in elements: 32 MB in float32.
    chunk_elements: int = 8_000_000
    # Check each candidate's CRC on every search (about 16 ms per 64 MB read). Off by default:
    # headers and sizes are always checked, files are written atomically, and FeatureStore.scrub()
    # finds bit rot off the query path.
    verify_candidates: bool = False
    # Re-rank matmul precision. bfloat16 runs 2-2.5x faster on CPUs with bf16 dot products
    # (AVX512-BF16, AMX) and moved scores by 3e-5 on average (at most 3e-4) on the real test
    # clips, never changing a top-1; elsewhere it is emulated and slower. "auto" picks it only
    # where the CPU has it. Products accumulate in float32; each region similarity is then
    # rounded to bfloat16 before the max over regions.
    precision: Literal["auto", "float32", "bfloat16"] = "auto"

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.neighbours_per_frame < 1 or self.max_query_frames < 1:
            raise ValueError("candidates, neighbours_per_frame and max_query_frames must be positive")
        if self.max_neighbours_per_frame < self.neighbours_per_frame:
            raise ValueError("max_neighbours_per_frame must be at least neighbours_per_frame")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be auto, float32 or bfloat16, got {self.precision!r}")


@dataclass(frozen=True)
class RankedHit:
    video_id: int
    score: float  # calibrated 0-1 (model.similarity.calibration)
    rank: int  # 1-based
    segments: list[Segment] = field(default_factory=list)
    raw_score: float = 0.0  # the similarity network's own score
    tier: Tier = "none"
    coverage: float = 0.0  # of the more covered video by the segments (0-1)


@dataclass
class SearchResult:
    """Hits plus what a caller may log or export: the candidates' votes and per-stage timings."""

    hits: list[RankedHit]
    candidates: list[tuple[int, float]]  # (video id, vote estimate of the frame Chamfer), best first
    reranked: int  # how many of the candidates (from the first) the re-rank budget allowed
    timings: dict[str, float]  # seconds: candidates, load, rerank, align, total
    skipped: list[int] = field(default_factory=list)  # candidates whose features vanished or are damaged


AllowedFilter = Callable[[Iterable[int]], set[int]]


class SearchEngine:
    """Query features in, ranked similar videos out. Stateless besides its parts: safe across threads."""

    def __init__(
        self,
        store: FeatureStorage,
        index: VectorIndex,
        similarity: HapVRSimilarity,
        config: SearchConfig | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.config = config or SearchConfig()
        self.reranker = Reranker(similarity, self.config)

    @property
    def similarity(self) -> HapVRSimilarity:
        return self.reranker.similarity

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
        tiers: Collection[str] | None = None,
    ) -> list[RankedHit]:
        """The k best videos for `query`, best first; see `search_detailed`."""
        return self.search_detailed(
            query,
            k=k,
            min_score=min_score,
            candidates=candidates,
            exclude=exclude,
            is_allowed=is_allowed,
            variants=variants,
            tiers=tiers,
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
        tiers: Collection[str] | None = None,
    ) -> SearchResult:
        """Search with timings. `exclude` ids and ids `is_allowed` rejects never appear in the result.

        `candidates` (default config.candidates) is raised to k if smaller. `variants` are other
        versions of the query (a flipped copy), each video keeping its best score. `min_score`
        applies to the calibrated score; `tiers`, when given, keeps hits of those tiers only.
        """
        if k < 1:
            raise ValueError("k must be positive")
        count = max(k, candidates or self.config.candidates)
        queries = [query, *variants]
        started = time.perf_counter()
        timings: dict[str, float] = {}

        votes = self._votes(queries, set(int(v) for v in exclude), k)
        ranked = self._filter(votes, is_allowed)[:count]
        chosen = self._within_budget(ranked, sum(q.num_frames for q in queries), k)
        timings["candidates"] = time.perf_counter() - started

        mark = time.perf_counter()
        loaded, skipped = self._load(chosen)
        windows = self._load_windows(loaded)
        timings["load"] = time.perf_counter() - mark

        mark = time.perf_counter()
        # Per (query version, target versions): video -> (network score, F).
        raw: list[tuple[VideoFeatures, dict[int, VideoFeatures], dict[int, tuple[float, np.ndarray]]]] = []
        for variant in queries:
            for targets in (loaded, windows) if windows else (loaded,):
                scores = {video_id: (score, sim) for video_id, score, sim in self.reranker.rerank(variant, targets)}
                raw.append((variant, targets, scores))
        timings["rerank"] = time.perf_counter() - mark

        mark = time.perf_counter()
        best: dict[int, RankedHit] = {}
        for variant, targets, scores in raw:
            for hit in self.reranker.judge(variant, targets, scores):
                kept = best.get(hit.video_id)
                if kept is None or (hit.score, hit.raw_score) > (kept.score, kept.raw_score):
                    best[hit.video_id] = hit
        order = sorted(best.values(), key=lambda hit: (-hit.score, -hit.raw_score, hit.video_id))
        if min_score is not None:
            order = [hit for hit in order if hit.score >= min_score]
        if tiers is not None:
            order = [hit for hit in order if hit.tier in tiers]
        hits = [dataclasses.replace(hit, rank=rank) for rank, hit in enumerate(order[:k], start=1)]
        timings["align"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        return SearchResult(hits=hits, candidates=ranked, reranked=len(chosen), timings=timings, skipped=skipped)

    # -- stage 1: candidates ---------------------------------------------------------------------
    def _votes(self, queries: Sequence[VideoFeatures], exclude: set[int], k: int) -> dict[int, float]:
        """Per video, the best vote over the query variants (see the module docstring)."""
        best: dict[int, float] = {}
        for query in queries:
            for video_id, vote in self.candidate_votes(query, exclude, k).items():
                if vote > best.get(video_id, -np.inf):
                    best[video_id] = vote
        return best

    def candidate_votes(self, query: VideoFeatures, exclude: Collection[int] = (), k: int = 20) -> dict[int, float]:
        """video id -> estimate of the query-to-video frame Chamfer similarity, for every video hit
        (enough neighbours per frame to reach about `k` videos)."""
        vectors = query.frame_vectors
        if len(vectors) > self.config.max_query_frames:
            rows = np.linspace(0, len(vectors) - 1, self.config.max_query_frames).round().astype(np.int64)
            vectors = vectors[np.unique(rows)]
        # Excluded videos (the query itself) may fill a frame's nearest neighbours; ask for more.
        crowd = sum(self.index.frames_of(int(video_id)) for video_id in exclude)
        neighbours = self.neighbours_for(k) + min(crowd, 1024)
        scores, video_ids, _ = self.index.search(vectors, neighbours)
        return aggregate_votes(scores, video_ids, exclude)

    def neighbours_for(self, k: int) -> int:
        """k': about k videos' worth of frames, within [neighbours_per_frame, max_neighbours_per_frame]."""
        videos = self.index.num_videos
        frames_per_video = self.index.num_frames / videos if videos else 1.0
        wanted = int(np.ceil(k * frames_per_video))
        return int(np.clip(wanted, self.config.neighbours_per_frame, self.config.max_neighbours_per_frame))

    @staticmethod
    def _filter(votes: dict[int, float], is_allowed: AllowedFilter | None) -> list[tuple[int, float]]:
        if is_allowed is not None and votes:
            allowed = {int(v) for v in is_allowed(set(votes))}
            votes = {video_id: vote for video_id, vote in votes.items() if video_id in allowed}
        return sorted(votes.items(), key=lambda item: (-item[1], item[0]))

    def _within_budget(self, ranked: list[tuple[int, float]], query_frames: int, k: int) -> list[int]:
        """The leading candidates whose re-rank fits `rerank_frame_pairs` (at least k of them).

        Lengths come from the index, so nothing is read from the store for candidates left out.
        """
        budget = self.config.rerank_frame_pairs
        if budget is None:
            return [video_id for video_id, _ in ranked]
        min_frames = self.similarity.config.min_frames
        query_frames = max(query_frames, min_frames)
        chosen: list[int] = []
        pairs = 0
        for video_id, _ in ranked:
            cost = query_frames * max(self.index.frames_of(video_id), min_frames)
            if len(chosen) >= k and pairs + cost > budget:
                break
            chosen.append(video_id)
            pairs += cost
        return chosen

    # -- stage 2: exact re-rank ------------------------------------------------------------------
    def _load(self, video_ids: list[int]) -> tuple[dict[int, VideoFeatures], list[int]]:
        loaded: dict[int, VideoFeatures] = {}
        skipped: list[int] = []
        for video_id in video_ids:
            try:
                loaded[video_id] = self.store.get(video_id, verify=self.config.verify_candidates)
            except MissingFeaturesError:
                skipped.append(video_id)  # deleted between the index lookup and now
            except CorruptFeaturesError as error:
                log.error("search skips a candidate: %s", error)
                skipped.append(video_id)
        return loaded, skipped

    def _load_windows(self, loaded: dict[int, VideoFeatures]) -> dict[int, VideoFeatures]:
        """The stored inner-window features of the loaded candidates that have them."""
        windows: dict[int, VideoFeatures] = {}
        for video_id in loaded:
            try:
                window = self.store.get_window(video_id, verify=self.config.verify_candidates)
            except CorruptFeaturesError as error:
                log.error("search compares a candidate without its window: %s", error)
                continue
            if window is not None:
                windows[video_id] = window
        return windows


class Reranker:
    """The exact HAP-VR comparison of a query with given targets: scores, F and matched segments.

    The search re-ranks its candidates with it, and `hapvr compare` scores one pair with it, so
    both report the same score and the same ranges for the same pair and model.
    """

    def __init__(
        self, similarity: HapVRSimilarity, config: SearchConfig | None = None, calibration: Calibration | None = None
    ) -> None:
        self.similarity = similarity.eval()
        self.config = config or SearchConfig()
        self.calibration = calibration or shipped_calibration()
        precision = self.config.precision
        if precision == "auto":
            precision = "bfloat16" if cpu_has_bfloat16() else "float32"
        self.dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32

    def compare(self, query: VideoFeatures, target: VideoFeatures) -> RankedHit:
        """One pair: its scores, tier and matched segments, exactly as a search would rank it."""
        ((_, score, frame_sim),) = self.rerank(query, {0: target})
        (hit,) = self.judge(query, {0: target}, {0: (score, frame_sim)})
        return hit

    def judge(
        self,
        query: VideoFeatures,
        targets: dict[int, VideoFeatures],
        reranked: dict[int, tuple[float, np.ndarray]],
    ) -> list[RankedHit]:
        """Align every reranked target (video id -> (network score, symmetric F)) with the query in
        one batch: calibrated score, tier and segments of each, unranked (rank 0)."""
        ids = list(reranked)
        if not ids:
            return []
        query_energy = query.frame_energy()
        sims = [
            cosine_scaled(reranked[video_id][1], query_energy, targets[video_id].frame_energy()) for video_id in ids
        ]
        alignments = align_pairs(
            sims, _side(query), [_side(targets[video_id]) for video_id in ids], self.config.alignment
        )
        return [self._hit(video_id, reranked[video_id][0], alignment) for video_id, alignment in zip(ids, alignments)]

    def _hit(self, video_id: int, raw_score: float, alignment: PairAlignment) -> RankedHit:
        score = self.calibration(alignment.score, raw_score, alignment.contrast)
        return RankedHit(
            video_id=video_id,
            score=score,
            rank=0,
            segments=alignment.segments,
            raw_score=raw_score,
            tier=self.calibration.tier(score, alignment.coverage),
            coverage=alignment.coverage,
        )

    def rerank(
        self, query: VideoFeatures, targets: dict[int, VideoFeatures]
    ) -> Iterable[tuple[int, float, np.ndarray]]:
        """(video id, the network's exact score of the symmetric F, symmetric F [Tq, Tt] on the original
        frames) per target.

        Targets are concatenated along time (no padding) so F comes from one GEMM per chunk of
        about `chunk_elements` region pairs; only the small F matrices are padded into a batch
        for the network's video-level step. F is the network's own (`HapVRSimilarity.frame_similarity`,
        which pads every target to the longest and reduces over a permuted tensor: 4x slower here).
        """
        if not targets:
            return
        net = self.similarity
        min_frames = net.config.min_frames
        dtype = self.dtype
        query_rows = stretched_frame_index(query.num_frames, min_frames)
        query_weights = torch.from_numpy(query.weights[query_rows])
        q = torch.from_numpy(query.regions)[query_rows].to(dtype)
        _, regions, dim = q.shape
        budget_frames = max(1, self.config.chunk_elements // (len(query_rows) * regions * regions))
        ordered = sorted(targets, key=lambda video_id: (targets[video_id].num_frames, video_id))
        with torch.inference_mode():
            for chunk in _chunks(ordered, targets, budget_frames, min_frames):
                columns = [stretched_frame_index(targets[video_id].num_frames, min_frames) for video_id in chunk]
                lengths = [len(cols) for cols in columns]
                stacked = workspace("targets", sum(lengths) * regions * dim, dtype).view(-1, regions, dim)
                offset = 0
                for video_id, cols in zip(chunk, columns):
                    targets[video_id].regions_into(stacked[offset : offset + len(cols)], cols)
                    offset += len(cols)
                frame_sim, reverse = self._frame_similarity(q, stacked)
                symmetric = (frame_sim + reverse) / 2
                # Low-information frame pairs (black, single-colour, held) count as unmatched for
                # the network, so a shared fade or title card does not lift its score. The network
                # reads the symmetric F once, in an orientation that does not depend on which video
                # is the query (`canonical_transpose`), so the score is the same both ways.
                target_weights = np.concatenate([targets[v].weights[cols] for v, cols in zip(chunk, columns)])
                informative = torch.minimum(query_weights[:, None], torch.from_numpy(target_weights)[None, :])
                scores = self._video_scores(symmetric * informative, lengths).tolist()
                offset = 0
                for video_id, cols, score in zip(chunk, columns, scores):
                    matrix = symmetric[:, offset : offset + len(cols)].numpy()
                    offset += len(cols)
                    yield video_id, float(score), _unstretch(matrix, query_rows, cols)

    def _frame_similarity(self, query: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Region-level TopK-Chamfer F [Tq, N] of query [Tq, R, D] against N concatenated target frames,
        and the same Chamfer taken from the target frames' side (F of each target against the query,
        transposed), both from one GEMM.

        The GEMM puts target regions first ([N*R, Tq*R]), so the max over a target frame's
        regions runs across rows of contiguous memory (vectorised) instead of along a
        9-element innermost axis (measured 2 ms instead of 16 ms for 26 x 5,700 frames).
        Target frames are tiled so one GEMM output stays within `chunk_elements`.
        """
        tq, regions, dim = query.shape
        count = targets.shape[0]
        k = self.similarity.config.k_regions
        flat_query = query.reshape(tq * regions, dim).t()
        rows_per_tile = max(1, self.config.chunk_elements // (regions * tq * regions))
        frame_sim = torch.empty(count, tq, dtype=torch.float32)
        reverse = torch.empty(count, tq, dtype=torch.float32)
        for start in range(0, count, rows_per_tile):
            block = targets[start : start + rows_per_tile]
            size = len(block) * regions * tq * regions
            out = workspace("region_sim", size, query.dtype).view(len(block) * regions, tq * regions)
            sim = torch.mm(block.reshape(-1, dim), flat_query, out=out).view(len(block), regions, tq, regions)
            best = sim.amax(dim=1) if k == 1 else sim.topk(k, dim=1).values.float().mean(dim=1)
            frame_sim[start : start + len(block)] = best.float().mean(dim=2)  # over query regions
            back = sim.amax(dim=3) if k == 1 else sim.topk(k, dim=3).values.float().mean(dim=3)
            reverse[start : start + len(block)] = back.float().mean(dim=1)  # over target regions
        return frame_sim.t(), reverse.t()

    def _video_scores(self, frame_sim: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Symmetric F [Tq, sum(lengths)] of consecutive targets -> one score per target.

        Each target's block goes to the network's video-level step once, transposed where
        `canonical_transpose` says so; blocks of each orientation are padded to their longest
        with masks and scored as one batch.
        """
        blocks = list(frame_sim.split(lengths, dim=1))
        flips = [canonical_transpose(block) for block in blocks]
        scores = frame_sim.new_zeros(len(blocks))
        for flip in (False, True):
            rows = [row for row, flipped in enumerate(flips) if flipped == flip]
            if not rows:
                continue
            group = [blocks[row].t() if flip else blocks[row] for row in rows]
            shape = (len(group), max(block.shape[0] for block in group), max(block.shape[1] for block in group))
            batch = frame_sim.new_zeros(shape)
            mask = torch.zeros(shape, dtype=torch.bool)
            for slot, block in enumerate(group):
                batch[slot, : block.shape[0], : block.shape[1]] = block
                mask[slot, : block.shape[0], : block.shape[1]] = True
            scores[rows] = self.similarity.video_level(batch, mask).score
        return scores


def canonical_transpose(frame_sim: torch.Tensor) -> bool:
    """Whether a symmetric pair matrix F [Ta, Tb] goes to the network transposed.

    The video with more frames gives the rows (each of its frames looks for its best matches
    in the shorter video: on the held-out benchmark this ranks as well as the two directions
    averaged, mAP 0.781, where the shorter video as rows lost 0.02); on equal lengths the sign
    of sum F[i, j] (i - j) decides, which flips when F is transposed, so either video as the
    query picks the same orientation. A video against itself has a symmetric F, the same
    either way.
    """
    rows, cols = frame_sim.shape
    if rows != cols:
        return rows < cols
    offsets = torch.arange(rows, dtype=frame_sim.dtype)
    balance = float((frame_sim * (offsets[:, None] - offsets[None, :])).sum())
    return balance < 0


def _side(features: VideoFeatures) -> Side:
    return Side(features.timestamps, features.weights, features.duration)


def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), as torch sees it."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers of torch.cpu; a torch without them gets float32
        log.warning("cannot tell whether this CPU has bfloat16; re-ranking in float32")
        return False


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
    ordered: list[int], targets: dict[int, VideoFeatures], budget_frames: int, min_frames: int
) -> Iterable[list[int]]:
    """Consecutive groups of targets holding at most `budget_frames` frames (a longer target goes alone)."""
    chunk: list[int] = []
    total = 0
    for video_id in ordered:
        length = max(targets[video_id].num_frames, min_frames)
        if chunk and total + length > budget_frames:
            yield chunk
            chunk, total = [], 0
        chunk.append(video_id)
        total += length
    if chunk:
        yield chunk


def _unstretch(matrix: np.ndarray, rows: list[int], cols: list[int]) -> np.ndarray:
    """F over stretched frames -> F over the original frames (a short video's repeated rows collapse)."""
    if len(rows) != len(set(rows)):
        matrix = matrix[np.unique(rows, return_index=True)[1]]
    if len(cols) != len(set(cols)):
        matrix = matrix[:, np.unique(cols, return_index=True)[1]]
    return matrix
