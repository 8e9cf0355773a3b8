"""Fit the published score: calibration map and tiers, and how they fare on unseen recordings.

    python -m bench.calibrate [--dataset training|full] [--grid] [--write]

Which data. The descriptor and the similarity network are trained on the training side of
bench/footage.py, and there they separate other stretches of the same recording far better
than on footage they never saw (held-out same-recording negatives align as well as copies:
median alignment score 1.0 for both; training-side ones 0.47), so figures measured on the
training side are optimistic. No third footage side exists (every catalogued recording is on
one of the two), so the held-out side is also measured by cross-fitting over its recordings
(`--dataset full`), which says what a map fitted on footage no model saw would do:

- tiers: leave one recording group out. The map and thresholds fitted on the pairs that
  touch no video of that group classify the pairs of that group's queries; pooled over the
  groups, the copy tier's precision and recall are those of thresholds chosen without the
  recordings they are applied to;
- ranking: random halves of the recording groups; the map fitted on one half's pairs ranks
  the other half's queries (µAP and mAP over that half), both ways, over 4 splits.

The shipped map (`--write`, default dataset: full) is the fit on every held-out pair (the
usual last step of cross-fitting), so its own figures on that benchmark (bench/quality.py's
`aligned` row) are in-sample; the cross-fitted ones are what to expect on new recordings.
Fitted on the training side instead (`--dataset training`), the map ignores the frame
contrast (that side's same-recording negatives are already apart) and its copy threshold,
chosen there for precision 0.90, gives 0.59 on the held-out side (bench/results/calibration.md).

1. Every pair gets the shipped checkpoint's symmetric cosine frame matrix and network score
   (the search's own Reranker), once (cached).
2. A logistic model of "the pair shares copied footage" on the alignment score, the network
   score and the frame contrast (model.similarity.alignment) is fitted by maximum likelihood,
   weights kept non-negative and every video of the dataset scoring itself >= SELF_SCORE.
   `--grid` also searches the alignment knobs (threshold, full, min_gain) by µAP.
3. Tier thresholds on the calibrated score: `partial` is the lowest score whose pairs at or
   above it are at least 90% copies, capped at SELF_SCORE (a video against itself is always
   a copy), `related` the lowest at least 50% copies.

--write stores the map, thresholds and the dataset's cross-fitted figures in
model/similarity/calibration.json.
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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from bench.alignment_method import indexed_features
from bench.dataset import PRESETS, build_dataset, load_dataset
from bench.quality import CACHE, _model_key, _pca_key, cached, encode_videos
from model.metrics import retrieval_metrics
from model.similarity.alignment import AlignmentConfig, Side, align_pairs
from model.similarity.calibration import SHIPPED, Calibration

GRID = {"threshold": (0.0, 0.05, 0.1), "full": (0.4, 0.6), "min_gain": (0.6,)}
HALF_SPLITS = 4
PARTIAL_PRECISION, RELATED_PRECISION = 0.9, 0.5
PAIRS_VERSION = 5  # bump when the search computes the pair matrices or scores differently
SELF_SCORE = 0.995  # every video of the fitting set against itself scores at least this
# and so does the worst self pair seen on either side of the benchmark: whole alignment, the network
# scoring it 0.30 (a 5.5 s clip sped up), frame contrast 0.5 (lowest seen: 0.52).
SELF_FLOOR = (1.0, 0.3, 0.5)


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


def pair_measurements(
    sims: list[list[np.ndarray]], sides: Sequence[Side], raw: np.ndarray, config: AlignmentConfig
) -> np.ndarray:
    """[N, N, 3]: per pair (alignment score, network score, frame contrast), the calibration's inputs."""
    count = len(sides)
    out = np.zeros((count, count, 3))
    for q in range(count):
        for t, result in enumerate(align_pairs(sims[q], sides[q], sides, config)):
            out[q, t, 0], out[q, t, 2] = result.score, result.contrast
    out[..., 1] = raw
    return clip_measurements(out)


def clip_measurements(values: np.ndarray) -> np.ndarray:
    """The ranges Calibration.__call__ clips its inputs to."""
    return np.stack(
        [np.clip(values[..., 0], 0, 1), np.clip(values[..., 1], -1, 1), np.clip(values[..., 2], 0, 1)], axis=-1
    )


def fit_logistic(features: np.ndarray, labels: np.ndarray, selves: np.ndarray) -> np.ndarray:
    """(alignment, raw, contrast weights, bias) of P(copy) = sigmoid(w . x + b), maximum likelihood,
    weights kept non-negative (the score must rise with each measurement) and every self pair
    (`selves`, [N, 3]) scoring at least SELF_SCORE."""
    from scipy.optimize import minimize

    def loss(params: np.ndarray) -> float:
        z = features @ params[:3] + params[3]
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))

    floor = float(np.log(SELF_SCORE / (1 - SELF_SCORE)))
    result = minimize(
        loss,
        x0=np.array([10.0, 5.0, 0.0, -3.0]),
        method="SLSQP",
        bounds=[(1e-3, None), (0.0, None), (0.0, None), (None, None)],
        constraints=[{"type": "ineq", "fun": lambda w: selves @ w[:3] + w[3] - floor}],
    )
    return np.asarray(result.x, dtype=np.float64)


def calibrated_matrix(measurements: np.ndarray, weights: np.ndarray) -> np.ndarray:
    z = measurements @ weights[:3] + weights[3]
    return expit(z)  # the logistic without overflow for very negative z


def threshold_for(scores: np.ndarray, labels: np.ndarray, precision: float) -> float:
    """Lowest score t such that the pairs scoring >= t are at least `precision` copies."""
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(labels[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(hits >= precision)[0]
    if len(ok) == 0:
        return 1.0
    return float(scores[order][ok[-1]])


@dataclass
class Fit:
    """A map and its tier thresholds, fitted on some pairs."""

    weights: np.ndarray  # alignment, raw, contrast weights, bias
    partial: float
    related: float


def fit_pairs(measurements: np.ndarray, labels: np.ndarray, pairs: np.ndarray, selves: np.ndarray) -> Fit:
    """Fit on the pairs where `pairs` is true (measurements [Q, N, 3], labels [Q, N])."""
    selves = np.vstack([selves, np.array(SELF_FLOOR)[None, :]])
    weights = fit_logistic(measurements[pairs], labels[pairs].astype(np.float64), selves)
    scores = calibrated_matrix(measurements[pairs], weights)
    # A video against itself is a copy whatever the precision target asks: the copy threshold
    # never exceeds the self-score floor.
    partial_at = min(threshold_for(scores, labels[pairs], PARTIAL_PRECISION), SELF_SCORE)
    related_at = min(threshold_for(scores, labels[pairs], RELATED_PRECISION), partial_at)
    return Fit(weights, partial_at, related_at)


def cross_fitted(
    measurements: np.ndarray, labels: np.ndarray, keep: np.ndarray, groups: np.ndarray, queries: np.ndarray
) -> dict[str, Any]:
    """Held-out figures of the fitting procedure itself, by recording group (module docstring)."""
    query_groups = groups[queries]
    selves = measurements[np.arange(len(queries)), queries]
    copies = np.zeros(labels.shape, dtype=bool)
    for group in sorted(set(query_groups)):
        rows, videos = query_groups == group, groups == group
        fit = fit_pairs(measurements, labels, keep & ~rows[:, None] & ~videos[None, :], selves[~rows])
        copies[rows] = calibrated_matrix(measurements[rows], fit.weights) >= fit.partial
    predicted, truth = copies[keep], labels[keep]
    ranking = []
    rng = np.random.default_rng(0)
    names = sorted(set(query_groups))
    for _ in range(HALF_SPLITS):
        order = list(rng.permutation(names))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        for fit_half, eval_half in (halves, halves[::-1]):
            fit_rows, fit_videos = np.isin(query_groups, fit_half), np.isin(groups, fit_half)
            fit = fit_pairs(measurements, labels, keep & fit_rows[:, None] & fit_videos[None, :], selves[fit_rows])
            rows = np.isin(query_groups, eval_half)
            scores = calibrated_matrix(measurements[rows], fit.weights)
            metrics = retrieval_metrics(scores, labels[rows], ~keep[rows])
            ranking.append((metrics.micro_ap, metrics.map))
    micro, mean = np.mean(ranking, axis=0)
    return {
        "copy_tiers_leave_one_recording_out": {
            "precision": round(float(truth[predicted].mean()) if predicted.any() else 0.0, 4),
            "recall": round(float(predicted[truth].mean()), 4),
            "groups": len(names),
        },
        "ranking_on_unseen_recording_halves": {"micro_ap": round(float(micro), 4), "map": round(float(mean), 4)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default="full", help="a preset name or a folder (default: full, the held-out side)"
    )
    parser.add_argument("--grid", action="store_true", help="also search the alignment knobs (slower)")
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
    keep, labels = ~dataset.exclude(), dataset.positives

    configs = [AlignmentConfig()]
    if args.grid:
        configs = [
            dataclasses.replace(AlignmentConfig(), threshold=threshold, full=full, min_gain=min_gain)
            for threshold, full, min_gain in itertools.product(*GRID.values())
        ]
    grid = []
    for config in configs:
        measurements = pair_measurements(sims, sides, raw, config)[queries]
        selves = measurements[np.arange(len(queries)), queries]
        fit = fit_pairs(measurements, labels, keep, selves)
        metrics = retrieval_metrics(calibrated_matrix(measurements, fit.weights), labels, ~keep)
        grid.append((metrics.micro_ap, metrics.map, config, fit, measurements))
        log(
            f"  {config}: µAP {metrics.micro_ap:.3f} mAP {metrics.map:.3f} (weights and bias {np.round(fit.weights, 2)})"
        )
    micro, mean, best, fit, measurements = max(grid, key=lambda item: (round(item[0], 3), item[1]))
    log("cross-fitting by recording group ...")
    honest = cross_fitted(measurements, labels, keep, np.array(dataset.groups), queries)
    log(json.dumps(honest))

    calibrated = calibrated_matrix(measurements, fit.weights)[keep]
    copies = calibrated >= fit.partial
    truth = labels[keep]
    provenance = {
        "fitted_by": f"python -m bench.calibrate --dataset {args.dataset} --write",
        "dataset": f"{dataset.root.name} ({len(dataset.names)} videos, bench.dataset {dataset.params.get('packages')})",
        "pairs": int(keep.sum()),
        "copy_pairs": int(truth.sum()),
        "alignment": {k: getattr(best, k) for k in GRID},
        "in_sample": {
            "micro_ap": round(micro, 4),
            "map": round(mean, 4),
            "copy_tiers": {
                "precision": round(float(truth[copies].mean()) if copies.any() else 0.0, 4),
                "recall": round(float(copies[truth].mean()), 4),
            },
        },
        "cross_fitted": honest,
        "targets": {"partial": f"precision >= {PARTIAL_PRECISION}", "related": f"precision >= {RELATED_PRECISION}"},
    }
    alignment_weight, raw_weight, contrast_weight, bias = (float(w) for w in fit.weights)
    calibration = Calibration(
        alignment_weight,
        raw_weight,
        bias,
        round(fit.partial, 4),
        round(fit.related, 4),
        0.8,
        provenance,
        contrast_weight,
    )
    print(json.dumps(calibration.to_dict(), indent=1))
    if args.write:
        SHIPPED.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
        print(f"wrote {SHIPPED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
