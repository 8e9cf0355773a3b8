"""The published score with inner-window variants on both sides, as the service searches.

Each benchmark video is decoded as the service's embedder decodes it and its windows are found
and followed by the same model.window_track.WindowTrack: the same frames, the same crops, the
same encoder as `VideoEmbedder.embed_detailed(with_window=True)`. The cache keeps the crops'
encoder outputs in order, scored as frames 0, 1, ... of the video: on the benchmark's 8 s videos
a window shows from the first frame. A pair's score is then the best calibrated
score (ties broken by the network's) over query versions (the video, its window) against
target versions (the video, its window), which is what SearchEngine keeps per video when the
query's window is passed as a variant and the candidate's window record is re-ranked too.
Window encoder outputs are cached per video in the dataset's quality cache (an empty array
where no window is found).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def encode_windows(bundle: Any, paths: Sequence[Path], log: Callable[[str], None]) -> list[np.ndarray]:
    """Per video, the encoder output [T, R, D] float16 of its window's crop, or [0, R, D] without one."""
    from model.embedding import VideoEmbedder
    from model.settings import ModelSettings
    from model.window_track import WindowTrack

    embedder = VideoEmbedder(bundle, cache_dir=ModelSettings().model_cache_dir)
    out = []
    found = 0
    started = time.monotonic()
    for i, path in enumerate(paths, 1):
        encoded = []
        track = WindowTrack()
        for batch in embedder.frames(path):
            for crop in track.feed(batch):
                encoded.append(embedder.encoder.encode(np.ascontiguousarray(crop.frames)).astype(np.float16))
        for crop in track.finish():
            encoded.append(embedder.encoder.encode(np.ascontiguousarray(crop.frames)).astype(np.float16))
        if encoded:
            out.append(np.concatenate(encoded))
            found += 1
        else:
            out.append(np.zeros((0, 9, bundle.pca.dim), np.float16))
        if i % 100 == 0:
            log(f"  windows: {i}/{len(paths)} videos, {found} with a window, {time.monotonic() - started:.0f} s")
    return out


def window_scores(
    bundle: Any, features: Sequence[Any], windows: Sequence[Any | None], log: Callable[[str], None]
) -> np.ndarray:
    """[N, N] best calibrated score over the versions of both videos (row = query)."""
    from indexer.search import Reranker

    reranker = Reranker(bundle.similarity)
    count = len(features)
    scores = np.zeros((count, count))
    raw = np.full((count, count), -np.inf)
    whole = dict(enumerate(features))
    cropped = {video_id: window for video_id, window in enumerate(windows) if window is not None}
    started = time.monotonic()
    for row, query in enumerate(features):
        versions = [query] if windows[row] is None else [query, windows[row]]
        for version in versions:
            for targets in (whole, cropped) if cropped else (whole,):
                reranked = {video_id: (score, sim) for video_id, score, sim in reranker.rerank(version, targets)}
                for hit in reranker.judge(version, targets, reranked):
                    if (hit.score, hit.raw_score) > (scores[row, hit.video_id], raw[row, hit.video_id]):
                        scores[row, hit.video_id], raw[row, hit.video_id] = hit.score, hit.raw_score
        if (row + 1) % 100 == 0:
            log(f"  window-aligned {row + 1}/{count} queries, {time.monotonic() - started:.0f} s")
    return scores


def search_timings(dataset_arg: str, queries: int, log: Callable[[str], None]) -> str:
    """Search time without and with window variants, one run: the benchmark's videos indexed twice
    (plain, and with window records), the same queries against each, alternating; a markdown table.

    Features come from the quality cache (`python -m bench.quality --methods aligned-window` first).
    """
    import tempfile

    from bench.alignment_method import indexed_features
    from bench.dataset import PRESETS, build_dataset, load_dataset
    from bench.quality import CACHE, _load_cache, _pca_key
    from indexer.feature_store import FeatureStore
    from indexer.search import SearchEngine
    from indexer.variants import indexed_vectors, store_versions
    from indexer.vector_index import FaissIndex, IndexConfig
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    root = build_dataset(None, PRESETS[dataset_arg]).parent if dataset_arg in PRESETS else Path(dataset_arg)
    dataset = load_dataset(root)
    bundle = load_checkpoint(DEFAULT_CHECKPOINT)
    key = _pca_key(bundle)
    regions, crops = (_load_cache(dataset.root / CACHE / f"{name}-{key}.npz") for name in ("regions", "windows"))
    if not all(name in regions and name in crops for name in dataset.names):
        raise SystemExit("run `python -m bench.quality --methods aligned-window` on this dataset first")
    features = indexed_features(bundle, [regions[name] for name in dataset.names])
    windows = [indexed_features(bundle, [crops[n]])[0] if len(crops[n]) else None for n in dataset.names]
    with tempfile.TemporaryDirectory(prefix="hapvr-window-") as scratch:
        engines = {}
        for with_windows in (False, True):
            store = FeatureStore(Path(scratch) / str(with_windows))
            index = FaissIndex(IndexConfig(dim=bundle.pca.dim))
            for video_id, (video, window) in enumerate(zip(features, windows)):
                store_versions(store, video_id, video, window if with_windows else None)
                index.add(video_id, indexed_vectors(store, video_id))
            engines[with_windows] = SearchEngine(store, index, bundle.similarity)
        boxed = [q for q in dataset.queries if windows[q] is not None]
        plain = [q for q in dataset.queries if windows[q] is None]
        rng = np.random.default_rng(0)
        picked = {
            "query with a window": sorted(rng.choice(boxed, min(len(boxed), queries // 2), replace=False).tolist()),
            "query without": sorted(rng.choice(plain, min(len(plain), queries // 2), replace=False).tolist()),
        }
        took: dict[tuple[str, bool], list[float]] = {}
        for group, rows in picked.items():
            for number, row in enumerate(rows):
                for with_windows in (False, True) if number % 2 == 0 else (True, False):
                    variants = [windows[row]] if with_windows and windows[row] is not None else []
                    started = time.perf_counter()
                    engines[with_windows].search(features[row], k=20, exclude={row}, variants=variants)
                    took.setdefault((group, with_windows), []).append(time.perf_counter() - started)
            log(f"  timed {len(rows)} queries: {group}")
    lines = [
        "| queries | n | without windows: mean ms | p95 ms | with windows: mean ms | p95 ms | with / without |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in picked:
        before, after = (1000 * np.array(took[(group, w)]) for w in (False, True))
        lines.append(
            f"| {group} | {len(before)} | {before.mean():.0f} | {np.percentile(before, 95):.0f} "
            f"| {after.mean():.0f} | {np.percentile(after, 95):.0f} | {after.mean() / before.mean():.2f} |"
        )
    found = sum(window is not None for window in windows)
    return f"{len(features)} videos indexed, {found} with a window record.\n\n" + "\n".join(lines)


def main() -> None:
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m bench.window_method", description="Search time without and with window variants."
    )
    parser.add_argument("--dataset", default="full")
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    load = os.getloadavg()[0]
    table = search_timings(args.dataset, args.queries, lambda message: print(message, file=sys.stderr))
    print(f"{table}\n\nload before the run: {load:.1f}")


if __name__ == "__main__":
    main()
