"""Quality at scale: the held-out benchmark searched inside many distractor videos, by the service's search.

    python -m bench.quality_at_scale --distractors 10000 [--dataset full] [--data-dir DIR]

Distractors come from real footage, never from the benchmark's: every video of the training
side of the footage split (bench.footage.training_videos(); no recording of it is held out) is
decoded at the service's sampling (1 fps, short side 256, model.embedding.VideoEmbedder) into
--versions edited versions, each version one draw of 1-3 frame edits of model.train.copy_edits
(crop, colour, blur, grayscale, low resolution, text or emoji, logo and caption, border,
picture-in-picture, JPEG; a flip at times) applied alike to every frame of it, and embedded with
the shipped checkpoint. That pool of real frame features is then cut into distractor videos:
each is 5 to 50 frames long, made of 1 to 3 contiguous runs of one (source, version) each, so
sources and edits mix. The pool is limited (a few thousand frames), so distractors share
frames with each other, never with the benchmark; a distractor is therefore a re-cut of real
footage under real edits, harder than random vectors, easier than fresh footage of the world.

Every benchmark video (ids 1..B) and its inner window (indexer.variants, from the same crops
bench.quality's aligned-window method encodes) goes through a real FeatureStore (the service's
compact codes), distractors after them; two real FaissIndex objects are filled from the store
as the service indexes (indexer.variants.indexed_vectors): the benchmark alone, and the
distractors first, then the benchmark. Every benchmark query is searched by id as
GET /search?video_id=V does (SearchEngine, the stored window as a variant, V excluded,
candidates max(100, k)); a target's score is its published score, a video not returned scores
below every returned one (so a copy the search misses ranks behind every distractor).
Metrics: model.metrics over the benchmark's relevance (mAP, µAP, R@1), with and without
distractors, from the one run.

Writes bench/results/quality_scale.md (and .json beside it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from model.features import VideoFeatures

RESULTS = Path(__file__).with_name("results") / "quality_scale.md"
DEFAULT_DATA = Path("/work/bench-data/scale-quality")
MIN_FRAMES, MAX_FRAMES, MAX_RUNS = 5, 50, 3
UNRETURNED = -1.0  # below every published score (they lie in [0, 1])


@dataclass(frozen=True)
class PoolSpec:
    """How the distractor frame pool is made from real footage."""

    versions: int = 3  # edited versions of each source video
    max_frames: int = 240  # sampled frames per source video at most, from its middle (the whole film has 596)
    seed: int = 0


@dataclass
class Pool:
    """Real frame features: one entry per (source video, edited version), as the service stores them."""

    entries: list[VideoFeatures]
    names: list[str]  # "source#version: edit, edit"
    encode_s: float

    @property
    def frames(self) -> int:
        return sum(entry.num_frames for entry in self.entries)


def _edited_batch(frames: np.ndarray, other: np.ndarray, seed: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """Every frame under the same edits: one seed per version, drawn again for each frame."""
    from model.train.copy_edits import SHORT_SIDE, copy_view

    edited, names = [], []
    for frame in frames:
        image, names = copy_view(frame, other, np.random.default_rng(list(seed)))
        edited.append(image)
    shapes = {image.shape for image in edited}
    if len(shapes) != 1:  # crops draw the same box on frames of the same size: never expected
        raise RuntimeError(f"edited frames differ in size: {shapes} (short side {SHORT_SIDE})")
    return np.stack(edited), names


def make_pool(embedder: Any, sources: Sequence[Path], spec: PoolSpec, log: Callable[[str], None]) -> Pool:
    """Decode, edit and embed every source `spec.versions` times (see the module docstring)."""
    if not sources:
        raise ValueError("no source videos for distractors")
    started = time.monotonic()
    decoded = []
    for path in sources:
        frames = np.concatenate([np.asarray(batch) for batch in embedder.frames(path)])
        start = max(0, (len(frames) - spec.max_frames) // 2)  # the middle of a long film, past its titles
        decoded.append(frames[start : start + spec.max_frames])
    entries, names = [], []
    for number, (path, frames) in enumerate(zip(sources, decoded)):
        other_frames = decoded[(number + 1) % len(decoded)]  # unrelated footage for picture-in-picture
        other = other_frames[len(other_frames) // 2]
        for version in range(spec.versions):
            edited, edits = _edited_batch(frames, other, (spec.seed, number, version))
            entries.append(embedder.embed_frames(edited, np.arange(len(edited), dtype=np.float64) / embedder.fps))
            names.append(f"{Path(path).name}#{version}: {', '.join(edits)}")
        log(f"  pool: {number + 1}/{len(sources)} sources, {time.monotonic() - started:.0f} s")
    return Pool(entries, names, time.monotonic() - started)


def _pool_key(sources: Sequence[Path], spec: PoolSpec, model_key: str) -> str:
    text = "\n".join(f"{p.name}:{p.stat().st_size}" for p in sources)
    return hashlib.sha1(f"{text}\n{asdict(spec)}\n{model_key}".encode()).hexdigest()[:12]


def cached_pool(
    embedder: Any, sources: Sequence[Path], spec: PoolSpec, model_key: str, cache: Path, log: Callable[[str], None]
) -> tuple[Pool, bool]:
    """The pool, from `cache`/pool-KEY.npz when there; (pool, came from the cache)."""
    from model.fileio import atomic_write

    file = cache / f"pool-{_pool_key(sources, spec, model_key)}.npz"
    if file.is_file():
        with np.load(file) as stored:
            names = [str(n) for n in stored["names"]]
            entries = [_frames(stored[f"r{i}"], stored[f"v{i}"]) for i in range(len(names))]
            return Pool(entries, names, float(stored["encode_s"])), True
    pool = make_pool(embedder, sources, spec, log)
    arrays = {f"r{i}": e.regions.astype(np.float16) for i, e in enumerate(pool.entries)}
    arrays |= {f"v{i}": e.frame_vectors.astype(np.float32) for i, e in enumerate(pool.entries)}
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write(
        file,
        lambda handle: np.savez(handle, names=np.array(pool.names), encode_s=pool.encode_s, **arrays),
        mode=0o644,
    )
    return pool, False


def _frames(regions: np.ndarray, vectors: np.ndarray) -> VideoFeatures:
    count = len(regions)
    return VideoFeatures(
        regions=regions,
        frame_vectors=vectors,
        timestamps=np.arange(count, dtype=np.float64),
        duration=float(count),
        fps=1.0,
    )


def compose_distractor(pool: Pool, rng: np.random.Generator) -> VideoFeatures:
    """5 to 50 frames: 1 to 3 contiguous runs, each of one pool entry (source and edit)."""
    length = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    runs = int(rng.integers(1, min(MAX_RUNS, length) + 1))
    cuts = np.sort(rng.choice(np.arange(1, length), size=runs - 1, replace=False)) if runs > 1 else np.array([])
    lengths = np.diff(np.concatenate([[0], cuts, [length]])).astype(int)
    regions, vectors = [], []
    for run in lengths:
        entry = pool.entries[int(rng.integers(len(pool.entries)))]
        take = min(int(run), entry.num_frames)
        start = int(rng.integers(0, entry.num_frames - take + 1))
        regions.append(entry.regions[start : start + take])
        vectors.append(entry.frame_vectors[start : start + take])
    return _frames(np.concatenate(regions), np.concatenate(vectors))


# ---------------------------------------------------------------------------------------
# The library and the searches


@dataclass
class Build:
    """What filling the store and the two indexes took."""

    store_s: float = 0.0  # benchmark and distractors written to the store (0 for videos already there)
    stored_now: int = 0
    index_empty_s: float = 0.0  # benchmark-only index
    index_full_s: float = 0.0  # distractors, then the benchmark
    index_kind: str = ""
    index_frames: int = 0


def fill_store(
    store: Any,
    benchmark: Sequence[tuple[VideoFeatures, VideoFeatures | None]],
    pool: Pool,
    distractors: int,
    seed: int,
    build: Build,
    log: Callable[[str], None],
) -> list[int]:
    """Benchmark videos as ids 1..B (with their windows), distractors after; returns the distractor ids."""
    from indexer.variants import store_versions

    started = time.monotonic()
    for video_id, (features, window) in enumerate(benchmark, 1):
        store_versions(store, video_id, features, window)
    first = len(benchmark) + 1
    ids = list(range(first, first + distractors))
    for number, video_id in enumerate(ids):
        if video_id in store:  # a resumed run: distractor i is the same draw every time
            continue
        store.put(video_id, compose_distractor(pool, np.random.default_rng([seed, number])))
        build.stored_now += 1
        if build.stored_now % 10_000 == 0:
            log(f"  stored {build.stored_now} distractors, {time.monotonic() - started:.0f} s")
    build.store_s = time.monotonic() - started
    return ids


def fill_index(store: Any, video_ids: Sequence[int], threshold: int | None = None) -> Any:
    """A FaissIndex of these videos, in order, as the service indexes them (with the store to retrain
    from as it grows, and any retraining finished before it is searched); `threshold`: frames
    before it turns IVF-PQ (None: the service's default)."""
    from indexer.variants import indexed_vectors
    from indexer.vector_index import FaissIndex, IndexConfig

    config = IndexConfig() if threshold is None else IndexConfig(approximate_threshold=threshold)
    index = FaissIndex(config, store)
    for video_id in video_ids:
        index.add(video_id, indexed_vectors(store, video_id))
    index.wait_for_training()
    return index


def search_scores(engine: Any, queries: Sequence[int], columns: int, k: int) -> tuple[np.ndarray, float]:
    """[queries, columns] published scores (column = video id - 1), UNRETURNED where not returned; seconds."""
    scores = np.full((len(queries), columns), UNRETURNED)
    started = time.monotonic()
    for row, video_id in enumerate(queries):
        window = engine.store.get_window(video_id)
        hits = engine.search(
            engine.store.get(video_id),
            k=k,
            candidates=max(engine.config.candidates, k),
            exclude={video_id},
            variants=[] if window is None else [window],
        )
        for hit in hits:
            scores[row, hit.video_id - 1] = hit.score
    return scores, time.monotonic() - started


def returned(scores: np.ndarray, labels: np.ndarray, exclude: np.ndarray, benchmark: int) -> dict[str, float]:
    """What the returned lists hold: the share of all positives returned, and per query the
    distractors returned and those scored above the query's lowest-scored returned positive."""
    keep = ~exclude
    shown = (scores > UNRETURNED) & keep
    positives = labels & keep
    distractors = shown[:, benchmark:]
    lowest = np.where(positives & shown, scores, np.inf).min(axis=1, keepdims=True)
    above = distractors & (scores[:, benchmark:] > lowest)
    return {
        "positives returned": float((positives & shown).sum() / max(1, positives.sum())),
        "distractors returned per query": float(distractors.sum(axis=1).mean()),
        "distractors above a positive per query": float(above.sum(axis=1).mean()),
    }


# ---------------------------------------------------------------------------------------
# One run


@dataclass
class Outcome:
    distractors: int
    metrics: dict[str, dict[str, float]]  # "without" / "with" -> mAP, uAP, R@1, queries, returned(...)
    search_s: dict[str, float]
    build: Build
    pool_frames: int
    pool_entries: int
    pool_encode_s: float
    pool_cached: bool
    distractor_frames: int


def benchmark_features(
    bundle: Any, dataset: Any, log: Callable[[str], None]
) -> list[tuple[VideoFeatures, VideoFeatures | None]]:
    """Each benchmark video's features and its window's (or None), from bench.quality's caches."""
    from bench.alignment_method import indexed_features
    from bench.quality import CACHE, _pca_key, cached, encode_videos
    from bench.window_method import encode_windows

    key = _pca_key(bundle)
    encoded, _ = cached(dataset, dataset.root / CACHE / f"regions-{key}.npz", partial(encode_videos, bundle, log=log))
    crops, _ = cached(dataset, dataset.root / CACHE / f"windows-{key}.npz", partial(encode_windows, bundle, log=log))
    features = indexed_features(bundle, encoded)
    windows = [indexed_features(bundle, [crop])[0] if len(crop) else None for crop in crops]
    return list(zip(features, windows))


def run(
    dataset: Any,
    sources: Sequence[Path],
    distractors: int,
    data_dir: Path,
    *,
    spec: PoolSpec = PoolSpec(),
    k: int = 100,
    seed: int = 2026,
    threshold: int | None = None,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Index the benchmark with and without `distractors` distractor videos and score every query both ways."""
    from bench.quality import _model_key
    from indexer.feature_store import FeatureStore
    from indexer.search import SearchEngine
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from model.embedding import VideoEmbedder
    from model.metrics import retrieval_metrics
    from model.settings import ModelSettings

    if distractors < 0 or k < 1:
        raise ValueError("distractors must be >= 0 and k >= 1")
    bundle = load_checkpoint(DEFAULT_CHECKPOINT)
    model_key = _model_key(bundle)
    embedder = VideoEmbedder(bundle, cache_dir=ModelSettings().model_cache_dir)
    pool, pool_cached = cached_pool(embedder, sources, spec, model_key, data_dir, log)
    log(f"pool: {len(pool.entries)} edited versions, {pool.frames} frames ({'cached' if pool_cached else 'made'})")
    benchmark = benchmark_features(bundle, dataset, log)

    build = Build()
    store = FeatureStore(data_dir / f"store-{model_key}-{dataset.root.name}-{seed}", verify=False)
    store.remove_partial_writes()
    distractor_ids = fill_store(store, benchmark, pool, distractors, seed, build, log)
    log(f"store: {build.stored_now} distractors written in {build.store_s:.0f} s")
    bench_ids = list(range(1, len(benchmark) + 1))
    started = time.monotonic()
    alone = fill_index(store, bench_ids, threshold)
    build.index_empty_s = time.monotonic() - started
    started = time.monotonic()
    full = fill_index(store, [*distractor_ids, *bench_ids], threshold)
    build.index_full_s = time.monotonic() - started
    probed = "" if full.nprobe is None else f", nprobe {full.nprobe}"
    build.index_kind, build.index_frames = f"{full.kind}{probed}", full.num_frames
    log(f"index: {full.num_frames} frames ({full.kind}) in {build.index_full_s:.0f} s")

    queries = [q + 1 for q in dataset.queries]
    columns = len(benchmark) + distractors
    pad = np.zeros((len(queries), distractors), dtype=bool)
    labels = np.concatenate([dataset.positives, pad], axis=1)
    exclude = np.concatenate([dataset.exclude(), pad], axis=1)
    metrics, timings = {}, {}
    distractor_frames = (
        sum(store.get(v).num_frames for v in distractor_ids[:1000]) * distractors / max(1, min(1000, distractors))
    )
    for name, index in (("without", alone), ("with", full)):
        engine = SearchEngine(store, index, bundle.similarity)
        scores, timings[name] = search_scores(engine, queries, columns, k)
        metrics[name] = retrieval_metrics(scores, labels, exclude).as_dict() | returned(
            scores, labels, exclude, len(benchmark)
        )
        log(f"{name} distractors: {metrics[name]} ({timings[name]:.0f} s for {len(queries)} searches)")
    return Outcome(
        distractors=distractors,
        metrics=metrics,
        search_s=timings,
        build=build,
        pool_frames=pool.frames,
        pool_entries=len(pool.entries),
        pool_encode_s=pool.encode_s,
        pool_cached=pool_cached,
        distractor_frames=int(round(distractor_frames)),
    )


# ---------------------------------------------------------------------------------------
# Report


def write_report(outcome: Outcome, results: Path, command: str, dataset: Any, load: tuple[str, str]) -> None:
    without, with_ = outcome.metrics["without"], outcome.metrics["with"]
    drop = without["mAP"] - with_["mAP"]
    build = outcome.build
    lines = [
        "# Quality at scale: the held-out benchmark inside distractor videos",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
        f"load average before {load[0]}, after {load[1]} (shared machine).",
        "",
        f"Benchmark: `{dataset.root.name}` ({len(dataset.names)} videos, {len(dataset.queries)} queries), held-out "
        f"footage. Distractors: {outcome.distractors:,} videos, about {outcome.distractor_frames:,} frames in all.",
        "",
        "Search: the service's SearchEngine (indexer/search.py) at its defaults, by video id as GET /search does "
        "(stored inner window as a query variant, windows of indexed videos re-ranked too; distractors have none), "
        "k = 100, candidates max(100, k); score = the published (calibrated) score, as bench/quality.py's `aligned` "
        "methods; a video not returned ranks below every returned one.",
        "",
        "| distractors | mAP | µAP | R@1 | queries | positives returned | distractors returned / query "
        "| distractors above a returned positive / query | search s |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {count:,} | {m['mAP']:.3f} | {m['uAP']:.3f} | {m['R@1']:.3f} | {int(m['queries'])} | "
            f"{m['positives returned']:.3f} | {m['distractors returned per query']:.1f} | "
            f"{m['distractors above a positive per query']:.2f} | {outcome.search_s[name]:.0f} |"
            for name, count, m in (("without", 0, without), ("with", outcome.distractors, with_))
        ],
        "",
        f"mAP drop: **{drop:.3f}** (target <= 0.02: {'met' if drop <= 0.02 else 'NOT met'}); "
        f"µAP drop {without['uAP'] - with_['uAP']:.3f}.",
        "",
        f"Build: distractor pool {outcome.pool_entries} edited versions, {outcome.pool_frames:,} frames, "
        f"{'cached' if outcome.pool_cached else f'made in {outcome.pool_encode_s:.0f} s'}; "
        f"store {build.stored_now:,} distractors written in {build.store_s:.0f} s; "
        f"index with distractors {build.index_frames:,} frames ({build.index_kind}) in {build.index_full_s:.0f} s, "
        f"benchmark alone in {build.index_empty_s:.0f} s.",
        "",
        "## How the distractors are made, and what that means",
        "",
        *(__doc__ or "").split("\n\n")[2:4],
        "",
    ]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines))
    results.with_suffix(".json").write_text(json.dumps(asdict(outcome), indent=1))


def _load_average() -> str:
    """The one-minute load average, "?" off Linux."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    from bench.dataset import PRESETS, build_dataset, load_dataset
    from bench.footage import training_videos

    parser = argparse.ArgumentParser(prog="python -m bench.quality_at_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="full", help="a preset name or a built dataset folder")
    parser.add_argument("--distractors", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=PoolSpec.versions, help="edited versions per source")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--threshold", type=int, default=None, help="frames before an index turns IVF-PQ (default: the service's)"
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.distractors < 0:
        parser.error("--distractors must be >= 0")
    root = build_dataset(None, PRESETS[args.dataset]) if args.dataset in PRESETS else Path(args.dataset)
    dataset = load_dataset(root)
    load_before = _load_average()
    outcome = run(
        dataset,
        training_videos(),
        args.distractors,
        args.data_dir,
        spec=PoolSpec(versions=args.versions),
        k=args.k,
        seed=args.seed,
        threshold=args.threshold,
    )
    load_after = _load_average()
    command = "python -m bench.quality_at_scale " + " ".join(sys.argv[1:] if argv is None else argv)
    write_report(outcome, args.results, command.strip(), dataset, (load_before, load_after))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
