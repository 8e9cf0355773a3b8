"""Search latency at scale: the real query path over a library of synthetic features.

The library is made of synthetic videos (indexer.synthetic: shots of near-identical frames,
9 regions of 512-d, lengths log-uniform between --min-seconds and --max-seconds at 1 fps)
written to a real FeatureStore on disk and indexed in a real VectorIndex. Each query is the
real SearchEngine (FAISS candidates, feature-store reads, exact re-rank with the training-free
HAP-VR similarity, segments), searching either by an indexed video (GET /search?video_id=V:
its features are read from the store, V excluded) or by an edited excerpt of one (POST
/search, the clip's features given). Results go to bench/results/search.md.

    python bench/bench_search.py --videos 1000
    python bench/bench_search.py --videos 10000 --queries 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    library = parser.add_argument_group("library")
    library.add_argument("--videos", type=int, default=1000)
    library.add_argument("--min-seconds", type=float, default=10.0)
    library.add_argument("--max-seconds", type=float, default=180.0)
    library.add_argument(
        "--threshold", type=int, default=None, help="frames before the index turns IVF (default: IndexConfig's)"
    )
    library.add_argument(
        "--data-dir", type=Path, default=None, help="where the store goes (default: a temp dir, removed after)"
    )
    search = parser.add_argument_group("search")
    search.add_argument("--queries", type=int, default=60, help="timed queries (half by video id, half by clip)")
    search.add_argument("--warmup", type=int, default=5)
    search.add_argument("--k", type=int, default=20)
    search.add_argument("--candidates", type=int, default=None, help="C (default: SearchConfig's)")
    search.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto")
    search.add_argument("--threads", type=int, default=None, help="torch and FAISS threads (default: all cores)")
    search.add_argument(
        "--passive-omp",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep instead of spinning between parallel regions",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "search.md")
    out.add_argument("--label", default="", help="a note for the results row")
    out.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def build_library(args: argparse.Namespace, root: Path):
    from indexer.feature_store import FeatureStore
    from indexer.synthetic import synthetic_video
    from indexer.vector_index import IndexConfig, VectorIndex

    rng = np.random.default_rng(2026)
    store = FeatureStore(root / "features")
    config = IndexConfig() if args.threshold is None else IndexConfig(approximate_threshold=args.threshold)
    index = VectorIndex(config)
    log_min, log_max = np.log(args.min_seconds), np.log(args.max_seconds)
    started = time.perf_counter()
    frames = 0
    for video_id in range(1, args.videos + 1):
        length = int(round(np.exp(rng.uniform(log_min, log_max))))
        features = synthetic_video(rng, length)
        store.put(video_id, features)
        index.add(video_id, features.frame_vectors)
        frames += length
    return store, index, frames, time.perf_counter() - started


def make_queries(args: argparse.Namespace, store, count: int, seed: int) -> list[tuple[str, object, set[int]]]:
    """(kind, features, exclude): by-video queries read their features when timed, like the route does."""
    from indexer.synthetic import edited_copy

    rng = np.random.default_rng(seed)
    queries: list[tuple[str, object, set[int]]] = []
    for number in range(count):
        video_id = int(rng.integers(1, args.videos + 1))
        if number % 2 == 0:
            queries.append(("video", video_id, {video_id}))
        else:
            source = store.get(video_id)
            length = int(rng.integers(max(1, source.num_frames // 3), source.num_frames + 1))
            start = int(rng.integers(0, source.num_frames - length + 1))
            queries.append(("clip", (video_id, edited_copy(rng, source, start, length)), set()))
    return queries


def run_query(engine, store, query, k: int, candidates: int | None):
    kind, payload, exclude = query
    started = time.perf_counter()
    if kind == "video":
        features, expected = store.get(payload), None
    else:
        expected, features = payload
    result = engine.search_detailed(
        features, k=k, candidates=candidates, exclude=exclude, is_allowed=lambda ids: set(ids)
    )
    elapsed = time.perf_counter() - started
    correct = None if expected is None else bool(result.hits and result.hits[0].video_id == expected)
    return elapsed, result, features.num_frames, correct


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.passive_omp:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read once, when OpenMP starts: before torch and faiss load
    import faiss
    import torch

    from indexer.search import SearchConfig, SearchEngine
    from model.similarity.config import SimilarityConfig
    from model.similarity.network import HapVRSimilarity

    if args.threads is not None:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="hapvr-bench-search-"))
    try:
        store, index, frames, build_s = build_library(args, root)
        print(
            f"library: {args.videos} videos, {frames} frames, index {index.kind}, built in {build_s:.1f} s", flush=True
        )
        config = SearchConfig(precision=args.precision)
        engine = SearchEngine(store, index, HapVRSimilarity(SimilarityConfig.training_free()), config)

        for query in make_queries(args, store, args.warmup, seed=1):
            run_query(engine, store, query, args.k, args.candidates)
        latencies, stages, lengths, correct = [], [], [], []
        for query in make_queries(args, store, args.queries, seed=2):
            elapsed, result, length, hit = run_query(engine, store, query, args.k, args.candidates)
            latencies.append(elapsed)
            stages.append(result.timings)
            lengths.append(length)
            if hit is not None:
                correct.append(hit)
        ms = [value * 1000 for value in latencies]
        stage_ms = {name: float(np.median([s[name] for s in stages]) * 1000) for name in stages[0]}
        summary = {
            "videos": args.videos,
            "frames": frames,
            "index": index.kind,
            "queries": len(latencies),
            "query_frames_median": float(np.median(lengths)),
            "candidates": args.candidates or config.candidates,
            "precision": "bfloat16" if engine.dtype == torch.bfloat16 else "float32",
            "threads": torch.get_num_threads(),
            "p50_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95),
            "max_ms": max(ms),
            "stage_median_ms": stage_ms,
            "copy_found_first": f"{sum(correct)}/{len(correct)}",
            "load_avg": os.getloadavg()[0],
        }
        print(json.dumps(summary, indent=1))
        if not args.no_write:
            write_results(args, summary)
    finally:
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


HEADER = """# Search latency

`python bench/bench_search.py` (see its docstring). Real query path (FAISS candidates, feature
store reads from disk, exact training-free HAP-VR re-rank of C candidates, segments) over
synthetic features: videos log-uniform between 10 s and 180 s at 1 fps (median about 42 frames),
9 regions x 512-d, float16 in the store. Half the queries search by an indexed video (features
read from the store, the video excluded), half by an edited excerpt of one. Latency is per search,
in ms; stages are medians. "load" is the 1-minute load average when the run ended (this machine is
shared: higher load means noisier numbers).

| date | machine | videos | frames | index | C | precision | threads | p50 | p95 | max | candidates / load / rerank (median) | copy first | load | commit | note |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def write_results(args: argparse.Namespace, summary: dict) -> None:
    path = args.results
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(HEADER)
    stages = summary["stage_median_ms"]
    machine = f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores"
    row = (
        f"| {time.strftime('%Y-%m-%d %H:%M')} | {machine} | {summary['videos']} | {summary['frames']} "
        f"| {summary['index']} "
        f"| {summary['candidates']} | {summary['precision']} | {summary['threads']} | {summary['p50_ms']:.0f} "
        f"| {summary['p95_ms']:.0f} | {summary['max_ms']:.0f} "
        f"| {stages['candidates']:.0f} / {stages['load']:.0f} / {stages['rerank']:.0f} "
        f"| {summary['copy_found_first']} | {summary['load_avg']:.1f} | {git_commit()} | {args.label} |\n"
    )
    note = ", ".join(part for part in (args.label, "OMP_WAIT_POLICY=PASSIVE" if args.passive_omp else "") if part)
    row = row.replace(f"| {args.label} |\n", f"| {note} |\n")
    with path.open("a") as handle:
        handle.write(row)
    print(f"appended to {path}")


if __name__ == "__main__":
    sys.exit(main())
