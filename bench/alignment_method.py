"""The service's published score over every pair of the benchmark, and how well its ranges localise copies.

`aligned_scores` runs the search's own `Reranker` (network re-rank, symmetric F, alignment,
calibration) with one query against every other video in batches, over the same cached
encoder outputs the `default` method scores, so the two rows differ only in the score.
Frame times are the sampling grid (1 fps): the cache keeps features, not decode times.

`localisation` compares the ranges of (copy as query, its original) with the truth the
builder recorded: subclip (the copy is `source_span` of the original), splice (`copy_span`
of the copy is `source_span` of the original) and speed (the whole copy is the whole
original). Precision: the share of the predicted ranges' length (both videos' axes) inside
the true range; recall: the share of the true range covered; F1 of the two, per pair, then
averaged over pairs (a pair without any range has precision 0 and recall 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.dataset import Dataset

LOCALISED_KINDS = ("subclip", "splice", "speed")


def indexed_features(bundle: Any, encoded: Sequence[np.ndarray], fps: float = 1.0) -> list[Any]:
    """Encoder outputs -> VideoFeatures as the service stores them (index step, weights, times)."""
    import torch

    from model.features import VideoFeatures
    from model.similarity.network import frame_vectors

    out = []
    with torch.inference_mode():
        for regions in encoded:
            indexed = bundle.similarity.index(torch.from_numpy(regions.astype(np.float32)))
            times = np.arange(len(regions)) / fps
            out.append(
                VideoFeatures(
                    regions=indexed.numpy(),
                    frame_vectors=frame_vectors(indexed).numpy(),
                    timestamps=times,
                    duration=len(regions) / fps,
                )
            )
    return out


def aligned_scores(
    bundle: Any, features: Sequence[Any], log: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray, dict[tuple[int, int], list[Any]]]:
    """[N, N] calibrated scores (row = query), tiers, and the segments of every pair that has any."""
    from indexer.search import Reranker

    reranker = Reranker(bundle.similarity)
    count = len(features)
    scores = np.zeros((count, count))
    tiers = np.full((count, count), "none", dtype=object)
    segments: dict[tuple[int, int], list[Any]] = {}
    targets = dict(enumerate(features))
    started = time.monotonic()
    for row, query in enumerate(features):
        reranked = {video_id: (score, sim) for video_id, score, sim in reranker.rerank(query, targets)}
        for hit in reranker.judge(query, targets, reranked):
            scores[row, hit.video_id] = hit.score
            tiers[row, hit.video_id] = hit.tier
            if hit.segments:
                segments[(row, hit.video_id)] = hit.segments
        if (row + 1) % 100 == 0:
            log(f"  aligned {row + 1}/{count} queries, {time.monotonic() - started:.0f} s")
    return scores, tiers, segments


def tier_quality(dataset: Dataset, tiers: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision and recall over every ranked pair (query, other video) of: the copy tiers
    (duplicate, partial), and the copy tiers with related."""
    rows = tiers[dataset.queries]
    keep = ~dataset.exclude()
    labels = dataset.positives[keep]
    out = {}
    for name, chosen in (
        ("duplicate or partial", ("duplicate", "partial")),
        ("related or above", ("duplicate", "partial", "related")),
    ):
        picked = np.isin(rows[keep], chosen)
        out[name] = {
            "precision": float(labels[picked].mean()) if picked.any() else 0.0,
            "recall": float(picked[labels].mean()),
            "pairs": int(picked.sum()),
        }
    return out


def true_ranges(dataset: Dataset, copy: int, edits: dict[str, dict], durations: Sequence[float]) -> tuple | None:
    """((copy start, end), (original start, end)) in seconds, or None when the kind has no known offsets."""
    kind = dataset.kinds[copy]
    edit = edits.get(dataset.names[copy], {})
    original = dataset.names.index(dataset.sources[copy])
    if kind == "subclip":
        return (0.0, durations[copy]), tuple(edit["source_span"])
    if kind == "splice":
        return tuple(edit["copy_span"]), tuple(edit["source_span"])
    if kind == "speed":
        return (0.0, durations[copy]), (0.0, durations[original])
    return None


def localisation(
    dataset: Dataset,
    edits: dict[str, dict],
    durations: Sequence[float],
    segments_of: Callable[[int, int], list[Any]],
) -> dict[str, dict[str, float]]:
    """kind -> mean precision, recall, F1 and ranges per pair over (copy, original) pairs of that kind."""
    out: dict[str, dict[str, float]] = {}
    for kind in LOCALISED_KINDS:
        rows = []
        for copy in range(len(dataset.names)):
            if dataset.kinds[copy] != kind:
                continue
            truth = true_ranges(dataset, copy, edits, durations)
            if truth is None:
                continue
            original = dataset.names.index(dataset.sources[copy])
            found = segments_of(copy, original)
            predicted = [((s.query_start, s.query_end), (s.target_start, s.target_end)) for s in found]
            precision, recall = [], []
            for axis in (0, 1):
                spans = [p[axis] for p in predicted]
                inside = sum(_overlap(span, truth[axis]) for span in spans)
                length = sum(max(0.0, end - start) for start, end in spans)
                precision.append(inside / length if length > 0 else 0.0)
                recall.append(min(inside / max(truth[axis][1] - truth[axis][0], 1e-9), 1.0))
            p, r = float(np.mean(precision)), float(np.mean(recall))
            rows.append((p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0, len(predicted)))
        if rows:
            values = np.array(rows)
            out[kind] = {
                "precision": float(values[:, 0].mean()),
                "recall": float(values[:, 1].mean()),
                "f1": float(values[:, 2].mean()),
                "ranges_per_pair": float(values[:, 3].mean()),
                "pairs": len(rows),
            }
    return out


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
