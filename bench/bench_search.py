"""Search at scale: latency, memory and candidate recall of the real query path, at growing index sizes.

The library is made of synthetic videos (indexer.synthetic: shots of near-identical frames,
9 regions of 512-d, lengths log-uniform between --min-seconds and --max-seconds at 1 fps)
written to a real FeatureStore on disk and indexed in a real FaissIndex; it grows from one
size to the next and can live in --data-dir to be resumed or reused (bench/search_library.py).
At each size:

- latency: the real SearchEngine (FAISS candidates, feature-store reads, exact re-rank with the
  similarity network of --checkpoint, the shipped one by default, segments), searching either by an indexed video (GET
  /search?video_id=V: its features read from the store, V excluded) or by an edited excerpt of
  one (POST /search, the clip's features given); p50, p95, p99 and the stages' medians;
- memory per indexed video minute: the saved index file, the resident memory loading it adds,
  and the feature store's bytes on disk;
- candidate recall: the top-C candidate videos of the same queries from the index against an
  exhaustive inner-product search over the same frame vectors (bench/candidate_recall.py).

Appends a row per size to bench/results/search.md, keeps the latest run of each size in
search.json, redraws search_latency.png and regenerates bench/RESULTS.md.

    python bench/bench_search.py                                  # 1,000 videos in a temp dir
    python bench/bench_search.py --sizes 1000,10000,100000 --data-dir /var/tmp/hapvr-search-library
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from bench.candidate_recall import CandidateQuery
    from bench.search_library import IndexBuild, LibrarySpec, SyntheticLibrary
    from indexer.feature_store import FeatureStorage
    from indexer.search import SearchEngine, SearchResult
    from model.features import VideoFeatures
    from model.similarity.network import HapVRSimilarity

Query = tuple[str, Any, set[int]]  # (kind, payload, exclude); see make_queries


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive video counts, e.g. 1000,10000,100000")
    return sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    library = parser.add_argument_group("library")
    library.add_argument(
        "--sizes", type=parse_sizes, default=[1000], help="video counts to measure at, e.g. 1000,10000,100000"
    )
    library.add_argument("--min-seconds", type=float, default=5.0)
    library.add_argument("--max-seconds", type=float, default=50.0)
    library.add_argument("--seed", type=int, default=2026)
    library.add_argument(
        "--threshold", type=int, default=None, help="frames before the index turns IVF (default: IndexConfig's)"
    )
    library.add_argument(
        "--no-retrain",
        action="store_true",
        help="search the saved index with the IVF cells it was trained with (no retraining for its size)",
    )
    library.add_argument(
        "--refine-factor",
        type=int,
        default=None,
        help="re-score refine_factor x k' IVF-PQ neighbours from 8-bit vectors (0: off; default: IndexConfig's)",
    )
    library.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes drawing and storing new videos ahead of the index (1: in this process)",
    )
    library.add_argument(
        "--data-dir", type=Path, default=None, help="library to grow and keep (default: a temp dir, removed after)"
    )
    library.add_argument(
        "--index",
        choices=("faiss", "milvus"),
        default="faiss",
        help="frame index searched: the saved FAISS index, or a Milvus collection filled from the store",
    )
    library.add_argument(
        "--milvus-uri",
        default=None,
        help="Milvus server or milvus-lite path (default: milvus.db in the library's directory)",
    )
    search = parser.add_argument_group("search")
    search.add_argument("--queries", type=int, default=200, help="timed queries per size (half by id, half by clip)")
    search.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="model whose similarity network re-ranks (default: the shipped checkpoint)",
    )
    search.add_argument("--warmup", type=int, default=5)
    search.add_argument("--k", type=int, default=20)
    search.add_argument("--candidates", type=int, default=None, help="C (default: SearchConfig's)")
    search.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto")
    search.add_argument("--threads", type=int, default=None, help="torch and FAISS threads (default: all cores)")
    out = parser.add_argument_group("output")
    out.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "search.md")
    out.add_argument("--label", default="", help="a note for the results rows")
    out.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


# -- queries -----------------------------------------------------------------------------------


def make_queries(store: FeatureStorage, videos: int, count: int, seed: int) -> list[Query]:
    """By-video queries read their features when timed, like the route does; clips are edited excerpts."""
    from indexer.synthetic import edited_copy

    rng = np.random.default_rng(seed)
    queries: list[Query] = []
    for number in range(count):
        video_id = int(rng.integers(1, videos + 1))
        if number % 2 == 0:
            queries.append(("video", video_id, {video_id}))
        else:
            source = store.get(video_id)
            length = int(rng.integers(max(1, source.num_frames // 3), source.num_frames + 1))
            start = int(rng.integers(0, source.num_frames - length + 1))
            queries.append(("clip", (video_id, edited_copy(rng, source, start, length)), set()))
    return queries


def query_features(store: FeatureStorage, query: Query) -> tuple[VideoFeatures, int | None]:
    """(features, the video an excerpt was cut from, or None for a by-video query)."""
    kind, payload, _ = query
    if kind == "video":
        return store.get(payload), None
    expected, features = payload
    return features, expected


def run_query(
    engine: SearchEngine, query: Query, k: int, candidates: int | None
) -> tuple[float, SearchResult, int, bool | None]:
    """(seconds, result, query frames, excerpt's source ranked first or None)."""
    started = time.perf_counter()
    features, expected = query_features(engine.store, query)
    result = engine.search_detailed(
        features, k=k, candidates=candidates, exclude=query[2], is_allowed=lambda ids: set(ids)
    )
    elapsed = time.perf_counter() - started
    correct = None if expected is None else bool(result.hits and result.hits[0].video_id == expected)
    return elapsed, result, features.num_frames, correct


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_queries(engine: SearchEngine, videos: int, args: argparse.Namespace) -> dict:
    """Latency percentiles and stage medians over the timed queries (after the warm-up ones)."""
    from tqdm import tqdm

    for query in make_queries(engine.store, videos, args.warmup, seed=1):
        run_query(engine, query, args.k, args.candidates)
    latencies, stages, lengths, correct = [], [], [], []
    for query in tqdm(make_queries(engine.store, videos, args.queries, seed=2), desc="queries", mininterval=5):
        elapsed, result, length, hit = run_query(engine, query, args.k, args.candidates)
        latencies.append(elapsed * 1000)
        stages.append(result.timings)
        lengths.append(length)
        if hit is not None:
            correct.append(hit)
    return {
        "queries": len(latencies),
        "query_frames_median": float(np.median(lengths)),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "stage_median_ms": {name: float(np.median([s[name] for s in stages]) * 1000) for name in stages[0]},
        "copy_found_first": f"{sum(correct)}/{len(correct)}",
    }


def candidate_queries(engine: SearchEngine, videos: int, args: argparse.Namespace) -> list[CandidateQuery]:
    """The timed queries' candidate stage over the engine's index, with what each asked the index."""
    from bench.candidate_recall import CandidateQuery, RecordingIndex
    from indexer.search import SearchEngine

    recorder = RecordingIndex(engine.index)
    probe = SearchEngine(engine.store, recorder, engine.similarity, engine.config)
    found = []
    for query in make_queries(engine.store, videos, args.queries, seed=2):
        features, _ = query_features(engine.store, query)
        votes = probe.candidate_votes(features, query[2], args.k)
        vectors, k = recorder.searches[-1]
        found.append(CandidateQuery(votes=votes, vectors=vectors, k=k, exclude=frozenset(query[2])))
    return found


def measure_recall(engine: SearchEngine, videos: int, count: int, args: argparse.Namespace) -> dict:
    from bench.candidate_recall import candidate_recall

    started = time.perf_counter()
    recalls = candidate_recall(engine.store, range(1, videos + 1), candidate_queries(engine, videos, args), count)
    at_c = [recall.at_c for recall in recalls]
    return {
        "candidate_recall": float(np.mean(at_c)) if recalls else None,
        "candidate_recall_min": float(np.min(at_c)) if recalls else None,
        "best_candidate_recall": float(np.mean([r.best_found for r in recalls])) if recalls else None,
        "recall_queries": len(recalls),
        "exhaustive_s": time.perf_counter() - started,
    }


# -- one size ----------------------------------------------------------------------------------


def memory(library: SyntheticLibrary, build: IndexBuild, videos: int, minutes: float) -> dict:
    store_bytes = library.disk_bytes(videos)
    resident = build.resident_bytes
    return {
        "index_file_bytes": build.file_bytes,
        "index_resident_bytes": resident,
        "store_disk_bytes": store_bytes,
        "bytes_per_video_minute": {
            "index_file": build.file_bytes / minutes,
            "index_resident": None if resident is None else resident / minutes,
            "store_disk": store_bytes / minutes,
        },
    }


def milvus_index(library: SyntheticLibrary, videos: int, uri: str) -> tuple[Any, IndexBuild]:
    """A Milvus collection (HNSW, as the service makes it) holding videos 1..videos, filled from
    the library's store when it holds anything else; build_s is the fill's time."""
    from bench.search_library import IndexBuild
    from indexer.milvus_index import MilvusConfig, MilvusIndex

    # A bulk fill of 100k+ rows keeps milvus-lite busy indexing: calls get minutes, not the service's 10 s.
    index = MilvusIndex(MilvusConfig(uri=uri, collection=f"bench_{videos}", dim=512, timeout_s=600.0))
    build = IndexBuild(generated=0, reused=0, build_s=0.0, file_bytes=0, resident_bytes=None)
    if index.num_videos != videos:
        started = time.perf_counter()
        index.rebuild(library.store, range(1, videos + 1))
        index.save(uri)
        build.build_s, build.reused = time.perf_counter() - started, videos
    if "://" not in uri:
        build.file_bytes = sum(path.stat().st_size for path in Path(uri).rglob("*") if path.is_file())
    return index, build


def measure_size(library: SyntheticLibrary, videos: int, similarity: HapVRSimilarity, args: argparse.Namespace) -> dict:
    """Build or load the index of `videos` videos and measure everything at that size."""
    import torch

    from indexer.search import SearchConfig, SearchEngine

    index, build = library.open_index(videos, retrain=not args.no_retrain)
    if args.index == "milvus":
        index, build = milvus_index(library, videos, args.milvus_uri or str(library.root / "milvus.db"))
    config = SearchConfig(precision=args.precision)
    engine = SearchEngine(library.store, index, similarity, config)
    count = max(args.k, args.candidates or config.candidates)
    minutes = index.num_frames / 60  # 1 fps: one frame per second of video
    print(f"{videos} videos: {index.num_frames} frames, index {index.kind}; timing {args.queries} queries", flush=True)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores",
        "commit": git_commit(),
        "label": args.label,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "videos": videos,
        "frames": index.num_frames,
        "video_minutes": minutes,
        "index": index.kind,
        "ivf_cells": index.ivf_cells if args.index == "faiss" else None,
        "nprobe": index.nprobe if args.index == "faiss" else None,
        "refine_factor": index.refine_factor if args.index == "faiss" else None,
        "candidates": count,
        "precision": "bfloat16" if engine.reranker.dtype == torch.bfloat16 else "float32",
        "threads": torch.get_num_threads(),
        **time_queries(engine, videos, args),
        "load_avg": os.getloadavg()[0],  # right after the timed queries, before the exhaustive pass
        **measure_recall(engine, videos, count, args),
        **memory(library, build, videos, minutes),
        "build": {
            "generated": build.generated,
            "reused": build.reused,
            "build_s": build.build_s,
            "retrain_s": build.retrain_s,
            "store_s": build.store_s,
            "add_s": build.add_s,
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `hapvr serve` runs; read when OpenMP starts
    import faiss
    import torch

    from bench.search_library import LibraryMismatch, LibrarySpec, SyntheticLibrary
    from indexer.vector_index import IndexConfig
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    if args.threads is not None:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    spec = LibrarySpec(args.min_seconds, args.max_seconds, args.seed, args.threshold)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="hapvr-bench-search-"))
    print(
        f"library: lengths log-uniform {spec.min_seconds:g} to {spec.max_seconds:g} s, about "
        f"{spec.mean_frames():.1f} frames a video; store about {spec.store_bytes(args.sizes[-1]) / 1e9:.1f} GB "
        f"at {args.sizes[-1]} videos, in {root}",
        flush=True,
    )
    # The synthetic features stand for indexed ones, so only the comparison side of the model runs.
    bundle = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT)
    similarity = bundle.similarity
    print(f"re-rank: {bundle.mode} network of {args.checkpoint or DEFAULT_CHECKPOINT.name}", flush=True)
    try:
        try:
            refine = IndexConfig().refine_factor if args.refine_factor is None else args.refine_factor
            library = SyntheticLibrary(root, spec, refine, args.workers)
        except LibraryMismatch as error:
            print(f"error: {error}; pass the same library options or another --data-dir", file=sys.stderr)
            return 2
        for videos in args.sizes:
            summary = measure_size(library, videos, similarity, args)
            print(json.dumps(summary, indent=1), flush=True)
            if not args.no_write:
                write_results(args.results, spec, summary)
    finally:
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


# -- results -----------------------------------------------------------------------------------

INTRO = """# Search latency, memory and candidate recall

`python bench/bench_search.py --sizes 1000,10000,100000 --data-dir DIR` (see its docstring).
Real query path (FAISS candidates, feature store reads from disk, exact HAP-VR re-rank of C
candidates with the shipped network, comparator included, segments) over synthetic features, 9 regions x 512-d, float16 in the
store. Half the queries search by an indexed video (features read from the store, the video
excluded), half by an edited excerpt of one. Latency is per search, in ms; stages are medians.
"load" is the 1-minute load average after the timed queries. Target: p95 under 150 ms at
100,000 videos on this 2-core box.
"""

SCALE_HEADING = "## At growing index sizes: videos {min_seconds:g} s to {max_seconds:g} s"
SCALE_SECTION = """
{heading}

Video lengths log-uniform between {min_seconds:g} s and {max_seconds:g} s at 1 fps, the same draw
at every size (the library grows: the N-video library is the first N videos of every larger one).
Memory per indexed video minute, in KB: the saved index file (FAISS codes, ids, quantisers),
the resident memory loading it adds to the process, and the feature store on disk. recall@C:
share of the exact top-C candidate videos (exhaustive inner product over the same frame
vectors) that the index's top C holds, mean over the timed queries (min in brackets); 1-R@C:
share of queries whose exact best candidate is in the index's top C.

| date | machine | videos | frames | video min | index | C | p50 | p95 | p99 | max | candidates / load / rerank (median) | copy first | recall@C | 1-R@C | index file / RSS KB per min | store KB per min | load | commit | note |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
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
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _kb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def results_row(summary: dict) -> str:
    stages = summary["stage_median_ms"]
    per_minute = summary["bytes_per_video_minute"]
    recall = summary["candidate_recall"]
    recall_cell = "-" if recall is None else f"{recall:.3f} ({summary['candidate_recall_min']:.2f})"
    index = summary["index"]
    if summary["ivf_cells"] is not None:
        probes = f", nprobe {summary['nprobe']}" if summary.get("nprobe") else ""
        probes += f", SQ8 refine x{summary['refine_factor']}" if summary.get("refine_factor") else ""
        index = f"{index} ({summary['ivf_cells']} cells{probes})"
    retrain_s = summary["build"].get("retrain_s", 0.0)
    retrained = f"retrained for its size at load ({retrain_s:.0f} s)" if retrain_s >= 1 else ""
    note = ", ".join(p for p in (summary["label"], retrained, f"OMP_WAIT_POLICY={summary['omp_wait_policy']}") if p)
    cells = [
        summary["date"],
        summary["machine"],
        summary["videos"],
        summary["frames"],
        f"{summary['video_minutes']:.0f}",
        index,
        summary["candidates"],
        f"{summary['p50_ms']:.0f}",
        f"{summary['p95_ms']:.0f}",
        f"{summary['p99_ms']:.0f}",
        f"{summary['max_ms']:.0f}",
        f"{stages['candidates']:.0f} / {stages['load']:.0f} / {stages['rerank']:.0f}",
        summary["copy_found_first"],
        recall_cell,
        _ratio(summary["best_candidate_recall"]),
        f"{_kb(per_minute['index_file'])} / {_kb(per_minute['index_resident'])}",
        _kb(per_minute["store_disk"]),
        f"{summary['load_avg']:.1f}",
        summary["commit"],
        note,
    ]
    return "| " + " | ".join(str(cell) for cell in cells) + " |\n"


def append_row(path: Path, spec: LibrarySpec, summary: dict) -> None:
    """Append to the scale table at the end of search.md, first opening a section for this library
    when the last one is for another (or the file is new)."""
    text = path.read_text() if path.exists() else INTRO
    heading = SCALE_HEADING.format(min_seconds=spec.min_seconds, max_seconds=spec.max_seconds)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    if not headings or headings[-1] != heading:
        section = SCALE_SECTION.format(heading=heading, min_seconds=spec.min_seconds, max_seconds=spec.max_seconds)
        text = text.rstrip("\n") + "\n" + section
    path.write_text(text + results_row(summary))


def update_json(path: Path, spec: LibrarySpec, summary: dict) -> dict:
    """Keep the latest summary of each size drawn from this library; another library starts afresh."""
    data = json.loads(path.read_text()) if path.exists() else {}
    if data.get("library") != asdict(spec):
        data = {"library": asdict(spec), "sizes": {}}
    data["sizes"][str(summary["videos"])] = summary
    data["sizes"] = dict(sorted(data["sizes"].items(), key=lambda item: int(item[0])))
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def plot_latency(sizes: dict[str, dict], out: Path) -> None:
    """p50, p95 and p99 against indexed videos (log x), with the p95 target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.results_page import SEARCH_TARGET_MS, SEARCH_TARGET_VIDEOS

    runs = sorted(sizes.values(), key=lambda s: s["videos"])
    videos = [s["videos"] for s in runs]
    fig, axis = plt.subplots(figsize=(7, 4.5))
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
        axis.plot(videos, [s[key] for s in runs], marker="o", label=label)
    axis.axhline(
        SEARCH_TARGET_MS,
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"target: p95 < {SEARCH_TARGET_MS} ms at {SEARCH_TARGET_VIDEOS:,} videos",
    )
    axis.set_xscale("log")
    axis.set_xticks(videos, [f"{count:,}" for count in videos])
    axis.minorticks_off()
    axis.set_xlabel("indexed videos")
    axis.set_ylabel("search latency (ms)")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    axis.set_title(f"Search latency against index size ({runs[-1]['machine']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_results(path: Path, spec: LibrarySpec, summary: dict) -> None:
    from bench.results_page import refresh

    path.parent.mkdir(parents=True, exist_ok=True)
    append_row(path, spec, summary)
    data = update_json(path.with_suffix(".json"), spec, summary)
    plot_latency(data["sizes"], path.with_name("search_latency.png"))
    page = refresh(path.parent)
    print(f"appended to {path}; wrote {path.with_suffix('.json')}, {path.with_name('search_latency.png')}, {page}")


if __name__ == "__main__":
    sys.exit(main())
