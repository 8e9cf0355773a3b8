"""Fit the published score on the training side of the benchmark: alignment knobs, calibration map, tiers.

    python -m bench.calibrate [--dataset training] [--write]

1. Every pair of the training-side benchmark (`python -m bench.dataset --preset training`:
   the same edits over footage of the training packages, no recording of the held-out side)
   gets the shipped checkpoint's symmetric cosine frame matrix, once.
2. For each point of a small grid of alignment knobs (threshold, full, min_gain), a logistic
   model of "the pair shares copied footage" on the alignment score and the network's score
   is fitted by maximum likelihood (model.similarity.calibration), and scored by µAP (then
   mAP) over all queries; the best point is reported (and is what AlignmentConfig's defaults
   should say).
3. Tier thresholds on the calibrated score: `partial` is the lowest score whose pairs at or
   above it are at least 95% copies, `related` the lowest at least 50% copies.

--write stores the map and thresholds, with their provenance, in
model/similarity/calibration.json. Held-out verification is bench/quality.py's `aligned` row.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.alignment_method import indexed_features
from bench.dataset import PRESETS, Dataset, build_dataset, load_dataset
from bench.quality import CACHE, _model_key, _pca_key, cached, encode_videos
from model.metrics import retrieval_metrics
from model.similarity.alignment import AlignmentConfig, Side, align_pairs
from model.similarity.calibration import SHIPPED, Calibration

GRID = {"threshold": (0.0, 0.05, 0.1), "full": (0.4, 0.6), "min_gain": (0.6,)}
PARTIAL_PRECISION, RELATED_PRECISION = 0.9, 0.5
PAIRS_VERSION = 5  # bump when the search computes the pair matrices or scores differently
# A video against itself aligns whole (alignment score 1) and the shipped network scores it at
# 0.74 to 0.97 on the real test clips: the fit must put (1, SELF_RAW) at SELF_SCORE or above.
SELF_RAW, SELF_SCORE = 0.5, 0.995


def pair_matrices(
    bundle: Any, features: Sequence[Any], log: Callable[[str], None]
) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """sims[q][t]: the symmetric cosine F of query q against video t, as the search computes it;
    and the network's scores [N, N]."""
    from indexer.search import Reranker
    from model.similarity.segments import cosine_scaled, frame_energy

    reranker = Reranker(bundle.similarity)
    energies = [frame_energy(f.regions) for f in features]
    targets = dict(enumerate(features))
    sims = []
    raw = np.zeros((len(features), len(features)))
    started = time.monotonic()
    for q, query in enumerate(features):
        row: list[np.ndarray] = [np.empty(0)] * len(features)
        for t, score, sim in reranker.rerank(query, targets):
            row[t] = cosine_scaled(sim, energies[q], energies[t])
            raw[q, t] = score
        sims.append(row)
        if (q + 1) % 100 == 0:
            log(f"  {q + 1}/{len(features)} queries, {time.monotonic() - started:.0f} s")
    return sims, raw


def alignment_scores(
    sims: list[list[np.ndarray]], sides: Sequence[Side], config: AlignmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """[N, N] uncalibrated alignment scores and coverages."""
    count = len(sides)
    scores, coverage = np.zeros((count, count)), np.zeros((count, count))
    for q in range(count):
        for t, result in enumerate(align_pairs(sims[q], sides[q], sides, config)):
            scores[q, t], coverage[q, t] = result.score, result.coverage
    return scores, coverage


def fit_logistic(alignment: np.ndarray, raw: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(alignment weight, raw weight, bias) of P(copy) = sigmoid(w_a a + w_r raw + b), maximum likelihood,
    weights kept positive (the score must rise with both) and a whole alignment scoring SELF_SCORE."""
    from scipy.optimize import minimize

    def loss(params: np.ndarray) -> float:
        z = params[0] * alignment + params[1] * raw + params[2]
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))

    floor = float(np.log(SELF_SCORE / (1 - SELF_SCORE)))
    result = minimize(
        loss,
        x0=np.array([10.0, 5.0, -3.0]),
        method="SLSQP",
        bounds=[(1e-3, None), (0.0, None), (None, None)],
        constraints=[{"type": "ineq", "fun": lambda w: w[0] + w[1] * SELF_RAW + w[2] - floor}],
    )
    return float(result.x[0]), float(result.x[1]), float(result.x[2])


def calibrated_matrix(alignment: np.ndarray, raw: np.ndarray, weights: tuple[float, float, float]) -> np.ndarray:
    z = weights[0] * np.clip(alignment, 0, 1) + weights[1] * np.clip(raw, -1, 1) + weights[2]
    return 1.0 / (1.0 + np.exp(-z))


def threshold_for(scores: np.ndarray, labels: np.ndarray, precision: float) -> float:
    """Lowest score t such that the pairs scoring >= t are at least `precision` copies."""
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(labels[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(hits >= precision)[0]
    if len(ok) == 0:
        return 1.0
    return float(scores[order][ok[-1]])


def pairs_of(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(query index, video index) of every ranked pair (a query is never paired with itself), and labels."""
    keep = ~dataset.exclude()
    rows, cols = np.nonzero(keep)
    return np.stack([np.array(dataset.queries)[rows], cols]), dataset.positives[rows, cols]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="training", help="a preset name or a folder (default: training)")
    parser.add_argument("--write", action="store_true", help=f"store the fit in {SHIPPED}")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    if args.dataset in PRESETS and not Path(args.dataset).exists():
        dataset = load_dataset(build_dataset(None, PRESETS[args.dataset], log=log).parent)
    else:
        dataset = load_dataset(args.dataset)
    bundle = load_checkpoint(DEFAULT_CHECKPOINT)
    file = dataset.root / CACHE / f"regions-{_pca_key(bundle)}.npz"
    encoded, _ = cached(dataset, file, partial(encode_videos, bundle, log=log))
    features = indexed_features(bundle, encoded)
    sides = [Side(f.timestamps, f.weights, f.duration) for f in features]
    pairs_file = dataset.root / CACHE / f"pairs-v{PAIRS_VERSION}-{_model_key(bundle)}.pkl"
    if pairs_file.is_file():
        with open(pairs_file, "rb") as handle:
            sims, raw = pickle.load(handle)
    else:
        sims, raw = pair_matrices(bundle, features, log)
        with open(pairs_file, "wb") as handle:
            pickle.dump((sims, raw), handle)
    queries = np.array(dataset.queries)
    (q_index, t_index), labels = pairs_of(dataset)

    grid = []
    for threshold, full, min_gain in itertools.product(*GRID.values()):
        config = dataclasses.replace(AlignmentConfig(), threshold=threshold, full=full, min_gain=min_gain)
        alignment, _ = alignment_scores(sims, sides, config)
        weights = fit_logistic(alignment[q_index, t_index], raw[q_index, t_index], labels.astype(np.float64))
        scores = calibrated_matrix(alignment, raw, weights)
        metrics = retrieval_metrics(scores[queries], dataset.positives, dataset.exclude())
        grid.append((metrics.micro_ap, metrics.map, config, weights))
        log(
            f"  threshold {threshold} full {full} min_gain {min_gain}: µAP {metrics.micro_ap:.3f} "
            f"mAP {metrics.map:.3f} (weights {weights[0]:.2f}, {weights[1]:.2f}, bias {weights[2]:.2f})"
        )
    micro, mean, best, weights = max(grid, key=lambda item: (round(item[0], 3), item[1]))
    log(f"best: {best} (µAP {micro:.3f}, mAP {mean:.3f})")

    alignment, _ = alignment_scores(sims, sides, best)
    calibrated = calibrated_matrix(alignment, raw, weights)[q_index, t_index]
    partial_at = threshold_for(calibrated, labels, PARTIAL_PRECISION)
    related_at = min(threshold_for(calibrated, labels, RELATED_PRECISION), partial_at)
    copies = calibrated >= partial_at
    provenance = {
        "fitted_by": "python -m bench.calibrate --write",
        "dataset": f"{dataset.root.name} (bench.dataset preset training: training-side footage only)",
        "pairs": int(len(labels)),
        "copy_pairs": int(labels.sum()),
        "alignment": {k: getattr(best, k) for k in GRID},
        "training_micro_ap": round(micro, 4),
        "training_map": round(mean, 4),
        "training_copy_tiers": {
            "precision": round(float(labels[copies].mean()) if copies.any() else 0.0, 4),
            "recall": round(float(copies[labels].mean()), 4),
        },
        "targets": {"partial": f"precision >= {PARTIAL_PRECISION}", "related": f"precision >= {RELATED_PRECISION}"},
    }
    calibration = Calibration(*weights, round(partial_at, 4), round(related_at, 4), 0.8, provenance)
    print(json.dumps(calibration.to_dict(), indent=1))
    if args.write:
        SHIPPED.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
        print(f"wrote {SHIPPED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
