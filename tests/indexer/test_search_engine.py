"""Search engine on synthetic features: candidates, exact re-rank, alignment, exclusions, segments, tiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.feature_store import FeatureStore
from indexer.search import SearchConfig, SearchEngine, aggregate_votes, canonical_transpose, cpu_has_bfloat16
from indexer.synthetic import edited_copy, random_unit, synthetic_video
from indexer.vector_index import FaissIndex, IndexConfig
from model.features import VideoFeatures
from model.similarity.config import SimilarityConfig
from model.similarity.network import HapVRSimilarity

DIM = 64


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[FeatureStore, FaissIndex, dict[int, VideoFeatures]]:
    rng = np.random.default_rng(1)
    store = FeatureStore(tmp_path_factory.mktemp("features"))
    index = FaissIndex(IndexConfig(dim=DIM, pq_bytes=8))
    videos = {}
    for video_id in range(1, 61):
        features = synthetic_video(rng, int(rng.integers(2, 40)), dim=DIM)
        store.put(video_id, features)
        index.add(video_id, features.frame_vectors)
        videos[video_id] = features
    return store, index, videos


def _engine(library, config: SearchConfig | None = None, net: HapVRSimilarity | None = None) -> SearchEngine:
    store, index, _ = library
    net = net or HapVRSimilarity(SimilarityConfig.training_free(dim=DIM))
    return SearchEngine(store, index, net, config)


def test_votes_estimate_the_frame_chamfer() -> None:
    scores = np.array([[0.9, 0.8, 0.5], [0.7, 0.6, 0.2]], dtype=np.float32)
    videos = np.array([[1, 1, 2], [3, 2, -1]])
    votes = aggregate_votes(scores, videos)
    # Row floors 0.5 and 0.6: video 1 = (0.9 + 0.6) / 2, video 2 = (0.5 + 0.6) / 2, video 3 = (0.5 + 0.7) / 2.
    assert votes == pytest.approx({1: 0.75, 2: 0.55, 3: 0.6})
    assert aggregate_votes(scores, videos, exclude={1}) == pytest.approx({2: 0.55, 3: 0.6})
    assert aggregate_votes(scores, np.full_like(videos, -1)) == {}


def test_an_edited_excerpt_finds_its_original_with_the_right_segment(library) -> None:
    _, _, videos = library
    rng = np.random.default_rng(7)
    source_id = max(videos, key=lambda v: videos[v].num_frames)
    query = edited_copy(rng, videos[source_id], start=5, length=12)
    result = _engine(library).search_detailed(query, k=5)
    hits = result.hits
    assert hits[0].video_id == source_id and hits[0].rank == 1
    assert hits[0].score > 0.95 > hits[1].score
    assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    segment = hits[0].segments[0]
    assert (segment.query_start, segment.query_end) == (0.0, 12.0)
    assert (segment.target_start, segment.target_end) == (5.0, 17.0)
    assert set(result.timings) == {"candidates", "load", "rerank", "align", "total"}
    assert hits[0].tier == "duplicate" and all(hit.tier != "duplicate" for hit in hits[1:])
    assert not any(hit.segments for hit in hits[1:])  # unrelated videos have no matching frames


def test_excluded_and_not_allowed_videos_never_come_back(library) -> None:
    store, _, videos = library
    engine = _engine(library)
    query = store.get(10)  # as stored (4-bit regions): it scores about 1 against itself
    hits = engine.search(query, k=100, candidates=100)
    assert hits[0].video_id == 10 and hits[0].score == pytest.approx(1.0, abs=2e-3)
    asked: list[set[int]] = []

    def only_odd(ids):
        asked.append(set(ids))
        return {v for v in ids if v % 2}

    hits = engine.search(query, k=100, candidates=100, exclude={10, 11}, is_allowed=only_odd)
    returned = {hit.video_id for hit in hits}
    assert returned and not returned & {10, 11}
    assert all(video_id % 2 for video_id in returned)
    assert asked and not asked[0] & {10, 11}  # excluded ids are dropped before the filter is asked


def test_k_min_score_and_candidate_count(library) -> None:
    _, _, videos = library
    engine = _engine(library)
    query = edited_copy(np.random.default_rng(3), videos[4])
    assert len(engine.search(query, k=3)) == 3
    result = engine.search_detailed(query, k=10, candidates=5)
    assert len(result.candidates) == 10 and len(result.hits) == 10  # candidates is raised to k
    strict = engine.search(query, k=10, min_score=0.95)
    assert [hit.video_id for hit in strict] == [4]
    with pytest.raises(ValueError):
        engine.search(query, k=0)


def test_rerank_scores_are_the_networks_own(library) -> None:
    """Chunking, padding and tiling never change a score or a frame matrix; the raw score is the network's own."""
    store, _, videos = library
    torch.manual_seed(0)
    net = HapVRSimilarity(SimilarityConfig(dim=DIM)).eval()  # attention + comparator, untrained
    query = edited_copy(np.random.default_rng(5), videos[20], start=2, length=9)
    chunked = _engine(library, SearchConfig(chunk_elements=60_000, precision="float32"), net).search(query, k=30)
    tiled = _engine(library, SearchConfig(chunk_elements=500, precision="float32"), net).search(query, k=30)
    with torch.inference_mode():
        for hit in chunked:
            target = torch.from_numpy(store.get(hit.video_id).regions).float()
            source = torch.from_numpy(query.regions).float()
            # The network's video-level step on F averaged over both directions, in the pair's
            # canonical orientation: the same whichever video is the query.
            forward = net.one_to_many(source, [target]).frame_sim[0]
            symmetric = (forward + net.one_to_many(target, [source]).frame_sim[0].t()) / 2
            if canonical_transpose(symmetric):
                symmetric = symmetric.t()
            expected = net.video_level(symmetric[None], torch.ones_like(symmetric[None], dtype=torch.bool)).score[0]
            assert hit.raw_score == pytest.approx(float(expected), abs=1e-5)
    assert [h.video_id for h in tiled] == [h.video_id for h in chunked]
    for a, b in zip(tiled, chunked):
        assert a.raw_score == pytest.approx(b.raw_score, abs=1e-5)
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_bfloat16_rerank_keeps_the_ranking(library) -> None:
    _, _, videos = library
    query = edited_copy(np.random.default_rng(6), videos[30], start=0, length=10)
    exact = _engine(library, SearchConfig(precision="float32")).search(query, k=5)
    fast = _engine(library, SearchConfig(precision="bfloat16")).search(query, k=5)
    assert [hit.video_id for hit in fast] == [hit.video_id for hit in exact] and exact[0].video_id == 30
    for a, b in zip(fast, exact):
        assert a.raw_score == pytest.approx(b.raw_score, abs=2e-3)
        assert a.score == pytest.approx(b.score, abs=2e-2) and a.tier == b.tier
    assert _engine(library).reranker.dtype == (torch.bfloat16 if cpu_has_bfloat16() else torch.float32)


def test_rerank_budget_keeps_at_least_k(library) -> None:
    _, _, videos = library
    query = videos[40]
    roomy = _engine(library).search_detailed(query, k=5, candidates=50)
    tight = _engine(library, SearchConfig(rerank_frame_pairs=1)).search_detailed(query, k=5, candidates=50)
    assert roomy.reranked == len(roomy.candidates) > 5
    assert tight.reranked == 5 and len(tight.candidates) == len(roomy.candidates)
    assert [hit.video_id for hit in tight.hits][:1] == [hit.video_id for hit in roomy.hits][:1] == [40]


def test_short_videos_and_vanished_candidates(library, tmp_path: Path) -> None:
    store, index, videos = library
    tiny = [video_id for video_id, features in videos.items() if features.num_frames < 4]
    assert tiny, "the library should hold videos shorter than the comparator's minimum"
    engine = _engine(library)
    hits = engine.search(videos[tiny[0]], k=3)
    assert hits[0].video_id == tiny[0]
    assert hits[0].segments and hits[0].segments[0].target_start == 0.0

    # A candidate whose features disappear between the index lookup and the load is skipped.
    copy_store = FeatureStore(tmp_path / "copy")
    for video_id in videos:
        if video_id != 12:
            copy_store.put(video_id, videos[video_id])
    result = SearchEngine(copy_store, index, engine.similarity).search_detailed(videos[12], k=5)
    assert 12 in result.skipped and 12 not in {hit.video_id for hit in result.hits}


def test_variants_keep_each_videos_best_score(library) -> None:
    _, _, videos = library
    rng = np.random.default_rng(8)
    unrelated = synthetic_video(rng, 10, dim=DIM)
    copy = edited_copy(rng, videos[25], start=0, length=10)
    engine = _engine(library)
    assert engine.search(unrelated, k=1)[0].score < 0.95
    both = engine.search(unrelated, k=3, variants=[copy])
    alone = engine.search(copy, k=3)
    assert both[0].video_id == alone[0].video_id == 25
    assert both[0].score == pytest.approx(alone[0].score)


def test_empty_index_returns_nothing(tmp_path: Path) -> None:
    engine = SearchEngine(
        FeatureStore(tmp_path),
        FaissIndex(IndexConfig(dim=DIM, pq_bytes=8)),
        HapVRSimilarity(SimilarityConfig.training_free(dim=DIM)),
    )
    query = VideoFeatures(
        random_unit(np.random.default_rng(0), (3, 9, DIM)),
        random_unit(np.random.default_rng(1), (3, DIM)),
        np.arange(3.0),
    )
    assert engine.search(query) == []


def test_concurrent_searches_agree(library) -> None:
    """Each thread has its own scratch buffers: parallel searches return what serial ones do."""
    import threading

    _, _, videos = library
    engine = _engine(library)
    queries = [edited_copy(np.random.default_rng(seed), videos[seed + 1]) for seed in range(6)]
    expected = [[(h.video_id, round(h.score, 5)) for h in engine.search(q, k=5)] for q in queries]
    results: dict[int, list] = {}

    def run(slot: int) -> None:
        for _ in range(3):
            results[slot] = [(h.video_id, round(h.score, 5)) for h in engine.search(queries[slot], k=5)]

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[slot] for slot in range(len(queries))] == expected


def test_a_large_k_reaches_every_copy_of_a_much_copied_video(tmp_path: Path) -> None:
    """80 re-uploads of one 8-frame shot hold 640 near-identical frames: 64 neighbours of a query
    frame reach at most 64 of the copies; asking for k videos widens the search to reach them all."""
    rng = np.random.default_rng(3)
    store = FeatureStore(tmp_path / "features")
    index = FaissIndex(IndexConfig(dim=DIM))
    original = synthetic_video(rng, 8, dim=DIM, shot_frames=(8, 8))
    copies = set(range(2, 82))
    unrelated = [synthetic_video(rng, 8, dim=DIM) for _ in range(20)]
    library = [(1, original), *((c, edited_copy(rng, original, 0, 8)) for c in copies)]
    library += [(82 + i, video) for i, video in enumerate(unrelated)]
    for video_id, features in library:
        store.put(video_id, features)
        index.add(video_id, features.frame_vectors)
    query = edited_copy(rng, original, 0, 1)  # a one-frame excerpt: one row of neighbours
    engine = SearchEngine(store, index, HapVRSimilarity(SimilarityConfig.training_free(dim=DIM)))
    assert engine.neighbours_for(90) == 720  # 90 videos x 8 frames
    assert copies <= {hit.video_id for hit in engine.search(query, k=90)}
    narrow = SearchEngine(store, index, engine.similarity, SearchConfig(max_neighbours_per_frame=64))
    assert len(copies & {hit.video_id for hit in narrow.search(query, k=90)}) < len(copies)


def test_tier_filter_keeps_only_the_asked_tiers(library) -> None:
    _, _, videos = library
    engine = _engine(library)
    query = edited_copy(np.random.default_rng(8), videos[12])
    everything = engine.search(query, k=60)
    copies = engine.search(query, k=60, tiers={"duplicate", "partial"})
    assert [hit.video_id for hit in copies] == [
        hit.video_id for hit in everything if hit.tier in {"duplicate", "partial"}
    ]
    assert copies and copies[0].video_id == 12 and [hit.rank for hit in copies] == list(range(1, len(copies) + 1))
    related = [hit.video_id for hit in everything if hit.tier == "related"]
    assert [hit.video_id for hit in engine.search(query, k=60, tiers={"related"})] == related


def test_canonical_orientation_is_the_same_from_either_video() -> None:
    rng = torch.Generator().manual_seed(3)
    for rows, cols in [(5, 9), (9, 5), (7, 7)]:
        matrix = torch.rand(rows, cols, generator=rng)
        assert canonical_transpose(matrix) != canonical_transpose(matrix.t())
    assert canonical_transpose(torch.ones(6, 6)) == canonical_transpose(torch.ones(6, 6).t())


class _DecodingStore:
    """The library's store, handing out features whose float32 regions are already decoded."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def get(self, video_id: int, *, verify: bool | None = None) -> VideoFeatures:
        features = self.store.get(video_id, verify=verify)
        features.regions  # noqa: B018 - decodes them
        return features

    def get_window(self, video_id: int, *, verify: bool | None = None) -> VideoFeatures | None:
        return self.store.get_window(video_id, verify=verify)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_codes_decoded_into_the_workspace_score_as_decoded_regions(library, precision: str) -> None:
    store, index, videos = library
    net = HapVRSimilarity(SimilarityConfig.training_free(dim=DIM))
    config = SearchConfig(precision=precision)  # type: ignore[arg-type]
    query = edited_copy(np.random.default_rng(8), videos[12], start=1, length=12)
    lazy = SearchEngine(store, index, net, config).search(query, k=10)
    decoded = SearchEngine(_DecodingStore(store), index, net, config).search(query, k=10)  # type: ignore[arg-type]
    assert lazy[0].video_id == decoded[0].video_id == 12
    tolerance = 1e-6 if precision == "float32" else 5e-3
    for a, b in zip(lazy, decoded):
        assert a.video_id == b.video_id
        assert a.raw_score == pytest.approx(b.raw_score, abs=tolerance)
        assert a.score == pytest.approx(b.score, abs=tolerance)
        assert [(s.query_start, s.target_start) for s in a.segments] == [
            (s.query_start, s.target_start) for s in b.segments
        ]
