"""The frame index alone at a size whose feature store this box cannot build in hours: 1M videos.

bench_search measures the whole query path over a library in a real feature store; drawing and
durably storing a video costs 4 to 12 ms here (a file and two fsyncs each), hours at a million
videos. The part of a search that grows with the collection is the candidate stage (the IVF
scan); the store reads and the re-rank depend on C, not on how many videos are indexed. This
benchmark builds the service's FaissIndex over the same synthetic draw (LibrarySpec.draw: video
i is the video i of bench_search's library) without a store: the index keeps the IVF cells of
its first training, as `bench_search --no-retrain` does. The indexed vectors are the drawn
float32 frame vectors (bench_search indexes them as read back from the store's 4-bit codes).
Every frame vector is also written to a flat float32 file, streamed by the exhaustive search.

Measured: build time (drawing, index adds with the training at the IVF switch, saving), the
saved file and the resident memory its load adds, per video-minute; the candidate stage of
by-id and by-excerpt queries (SearchEngine.candidate_votes and the top-C ranking, as the
search's "candidates" stage); recall@C and 1-R@C against exhaustive inner product.

    python -m bench.index_scale --videos 1000000 --min-seconds 2 --max-seconds 10 --data-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from bench.candidate_recall import CandidateQuery
    from bench.search_library import LibrarySpec
    from indexer.search import SearchEngine
    from indexer.vector_index import FaissIndex
    from model.features import VideoFeatures

RESULTS = ROOT / "bench" / "results" / "index_scale.md"
DIM = 512


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=1_000_000)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--threshold", type=int, default=None, help="frames before the index turns IVF (default: IndexConfig's)"
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="where the index and the flat vectors go")
    parser.add_argument("--queries", type=int, default=100, help="timed queries (half by id, half by excerpt)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--label", default="")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


# -- build -------------------------------------------------------------------------------------


def build(spec: LibrarySpec, videos: int, root: Path) -> dict:
    """Index videos 1..videos (and write their vectors flat), unless a complete build is there."""
    from indexer.vector_index import FaissIndex, IndexLoadError

    index_path, done = root / f"index-{videos}.faiss", root / f"build-{videos}.json"
    try:
        FaissIndex.load(index_path, spec.index_config())
        if done.exists():
            return json.loads(done.read_text())
    except IndexLoadError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    index = FaissIndex(spec.index_config())  # no store: it keeps the cells of its first training
    timings = {"draw_s": 0.0, "add_s": 0.0}
    started = time.perf_counter()
    with open(root / "vectors.f32", "wb") as vectors_file, open(root / "owners.i64", "wb") as owners_file:
        for video_id in tqdm(range(1, videos + 1), desc=f"index to {videos}", mininterval=10, unit="video"):
            mark = time.perf_counter()
            vectors = np.ascontiguousarray(spec.draw(video_id).frame_vectors, dtype=np.float32)
            timings["draw_s"] += time.perf_counter() - mark
            mark = time.perf_counter()
            index.add(video_id, vectors)
            timings["add_s"] += time.perf_counter() - mark
            vectors_file.write(vectors.tobytes())
            owners_file.write(np.full(len(vectors), video_id, dtype=np.int64).tobytes())
    mark = time.perf_counter()
    index.wait_for_training()
    timings["add_s"] += time.perf_counter() - mark
    mark = time.perf_counter()
    index.save(index_path)
    timings["save_s"] = time.perf_counter() - mark
    timings["build_s"] = time.perf_counter() - started
    done.write_text(json.dumps(timings))
    return timings


def flat_blocks(root: Path, block_frames: int = 262_144) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame vectors, video id of each row) from the flat files, block_frames rows at a time."""
    owners = np.memmap(root / "owners.i64", dtype=np.int64, mode="r")
    vectors = np.memmap(root / "vectors.f32", dtype=np.float32, mode="r").reshape(len(owners), DIM)
    for start in tqdm(range(0, len(owners), block_frames), desc="exhaustive search", mininterval=10, unit="block"):
        yield np.array(vectors[start : start + block_frames]), np.array(owners[start : start + block_frames])


# -- queries -----------------------------------------------------------------------------------


def make_queries(spec: LibrarySpec, videos: int, count: int, seed: int) -> list[tuple[VideoFeatures, set[int]]]:
    """(features, excluded ids): by id (the video's own frames, itself excluded) or an edited excerpt,
    drawn as bench_search.make_queries draws them."""
    from indexer.synthetic import edited_copy

    rng = np.random.default_rng(seed)
    queries: list[tuple[VideoFeatures, set[int]]] = []
    for number in range(count):
        video_id = int(rng.integers(1, videos + 1))
        source = spec.draw(video_id)
        if number % 2 == 0:
            queries.append((source, {video_id}))
            continue
        length = int(rng.integers(max(1, source.num_frames // 3), source.num_frames + 1))
        start = int(rng.integers(0, source.num_frames - length + 1))
        queries.append((edited_copy(rng, source, start, length), set()))
    return queries


def candidate_stage(engine: SearchEngine, query: VideoFeatures, exclude: set[int], k: int, count: int) -> float:
    """Seconds for the query's candidate votes and their top-C ranking."""
    started = time.perf_counter()
    votes = engine.candidate_votes(query, exclude, k)
    sorted(votes.items(), key=lambda item: (-item[1], item[0]))[:count]
    return time.perf_counter() - started


def measure(index: FaissIndex, spec: LibrarySpec, args: argparse.Namespace, root: Path) -> dict:
    from bench.candidate_recall import CandidateQuery, RecordingIndex, nearest_in_blocks, recalls_against
    from indexer.feature_store import FeatureStore
    from indexer.search import SearchConfig, SearchEngine
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    similarity = load_checkpoint(DEFAULT_CHECKPOINT).similarity  # unused by the candidate stage
    # The candidate stage reads nothing from the store; an empty one stands in for it.
    store = FeatureStore(root / "no-features")
    engine = SearchEngine(store, index, similarity, SearchConfig())
    recorder = RecordingIndex(index)
    probe = SearchEngine(store, recorder, similarity, SearchConfig())  # off the clock: keeps what each asked
    count = max(args.k, engine.config.candidates)
    for query, exclude in make_queries(spec, args.videos, args.warmup, seed=1):
        candidate_stage(engine, query, exclude, args.k, count)
    queries = make_queries(spec, args.videos, args.queries, seed=2)
    latencies = [candidate_stage(engine, query, exclude, args.k, count) * 1000 for query, exclude in queries]
    load_avg = os.getloadavg()[0]
    found: list[CandidateQuery] = []
    for query, exclude in queries:
        votes = probe.candidate_votes(query, exclude, args.k)
        vectors, k = recorder.searches[-1]
        found.append(CandidateQuery(votes=votes, vectors=vectors, k=k, exclude=frozenset(exclude)))
    started = time.perf_counter()
    neighbours = max(query.k for query in found)
    exact = nearest_in_blocks(flat_blocks(root), np.concatenate([query.vectors for query in found]), neighbours)
    recalls = recalls_against(found, *exact, count)
    return {
        "queries": len(latencies),
        "query_frames_median": float(np.median([query.num_frames for query, _ in queries])),
        "candidates_p50_ms": float(np.percentile(latencies, 50)),
        "candidates_p95_ms": float(np.percentile(latencies, 95)),
        "candidates_p99_ms": float(np.percentile(latencies, 99)),
        "candidates_max_ms": float(max(latencies)),
        "load_avg": load_avg,
        "candidates": count,
        "candidate_recall": float(np.mean([r.at_c for r in recalls])),
        "candidate_recall_min": float(np.min([r.at_c for r in recalls])),
        "best_candidate_recall": float(np.mean([r.best_found for r in recalls])),
        "recall_queries": len(recalls),
        "exhaustive_s": time.perf_counter() - started,
    }


# -- results -----------------------------------------------------------------------------------

HEADER = """# The frame index alone at 1M videos

`python -m bench.index_scale --videos 1000000 --min-seconds 2 --max-seconds 10 --data-dir DIR`
(see its docstring). The service's FaissIndex over bench_search's synthetic draw, without a
feature store: build time, memory per video-minute, the candidate stage's latency (ms, by-id
and by-excerpt queries) and candidate recall against exhaustive inner product over every frame.
"load" is the 1-minute load average after the timed queries.

| date | machine | videos | frames | video min | index | C | build s (draw / add / save) | candidates p50 | p95 | p99 | max | recall@C | 1-R@C | index file / RSS KB per min | load | commit | note |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""


def results_row(summary: dict) -> str:
    build = summary["build"]
    per_minute = summary["bytes_per_video_minute"]
    resident = per_minute["index_resident"]
    cells = [
        summary["date"],
        summary["machine"],
        summary["videos"],
        summary["frames"],
        f"{summary['video_minutes']:.0f}",
        f"{summary['index']} ({summary['ivf_cells']} cells, nprobe {summary['nprobe']})",
        summary["candidates"],
        f"{build['build_s']:.0f} ({build['draw_s']:.0f} / {build['add_s']:.0f} / {build['save_s']:.0f})",
        f"{summary['candidates_p50_ms']:.0f}",
        f"{summary['candidates_p95_ms']:.0f}",
        f"{summary['candidates_p99_ms']:.0f}",
        f"{summary['candidates_max_ms']:.0f}",
        f"{summary['candidate_recall']:.3f} ({summary['candidate_recall_min']:.2f})",
        f"{summary['best_candidate_recall']:.3f}",
        f"{per_minute['index_file'] / 1000:.1f} / {'-' if resident is None else f'{resident / 1000:.1f}'}",
        f"{summary['load_avg']:.1f}",
        summary["commit"],
        summary["label"],
    ]
    return "| " + " | ".join(str(cell) for cell in cells) + " |\n"


def write_results(path: Path, summary: dict) -> None:
    text = path.read_text() if path.exists() else HEADER
    path.write_text(text + results_row(summary))
    with path.with_suffix(".jsonl").open("a") as runs:
        runs.write(json.dumps(summary) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `hapvr serve` runs; read when OpenMP starts
    from bench.bench_search import cpu_model, git_commit
    from bench.search_library import LibrarySpec, resident_bytes
    from indexer.vector_index import FaissIndex

    spec = LibrarySpec(args.min_seconds, args.max_seconds, args.seed, args.threshold)
    root = args.data_dir
    timings = build(spec, args.videos, root)
    path = root / f"index-{args.videos}.faiss"
    FaissIndex.load(path, spec.index_config())  # warm-up: the first load maps code, starts threads
    before = resident_bytes()
    index = FaissIndex.load(path, spec.index_config())
    after = resident_bytes()
    resident = None if before is None or after is None else after - before
    minutes = index.num_frames / 60  # 1 fps
    print(f"{args.videos} videos: {index.num_frames} frames, {index.ivf_cells} cells; timing", flush=True)
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores",
        "commit": git_commit(),
        "label": args.label,
        "library": {"min_seconds": spec.min_seconds, "max_seconds": spec.max_seconds, "seed": spec.seed},
        "videos": args.videos,
        "frames": index.num_frames,
        "video_minutes": minutes,
        "index": index.kind,
        "ivf_cells": index.ivf_cells,
        "nprobe": index.nprobe,
        **measure(index, spec, args, root),
        "index_file_bytes": path.stat().st_size,
        "index_resident_bytes": resident,
        "bytes_per_video_minute": {
            "index_file": path.stat().st_size / minutes,
            "index_resident": None if resident is None else resident / minutes,
        },
        "build": timings,
    }
    print(json.dumps(summary, indent=1), flush=True)
    if not args.no_write:
        write_results(args.results, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
