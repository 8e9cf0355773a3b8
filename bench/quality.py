"""Retrieval quality on the near-duplicate benchmark: our models side by side with peer tools.

    python -m bench.quality --dataset full [--checkpoint FILE ...] [--methods a,b] [--results DIR]
    python -m bench.quality --dataset DIR ...     # a folder built by `python -m bench.dataset --out DIR`

`--dataset full` (or small) builds that preset into the footage cache on first use.

Every video is embedded (or hashed) once per method and every pair is scored, so each
method yields one [videos, videos] score matrix; the benchmark's queries are its rows.
Metrics (model/metrics.py, ARCHITECTURE.md section 8): mAP, µAP, recall@1, overall and per
edit kind. Per kind, two views of the same matrix:
- "copy as query": the rows of that kind's copies, ranked over the whole database
  (positives: the videos that share footage with it: its original and the copies of it that
  show an overlapping stretch; bench/shared_footage.py);
- "original finds copy": the originals' rows with only that kind's copies as positives and
  the original's other copies left out of the ranking.
µAP pools the pairs of all the rows in view, so it rewards scores that mean the same for
every query: the network and hash scores here are fixed functions of the two videos.

Methods:
- training-free: hierarchical Chamfer over the encoder's PCA-whitened region features, no
  attention or comparator. PCA from model/checkpoints/default.safetensors when it is there,
  else fitted on the training side of the footage split (cached next to the footage).
- untrained: the shipped checkpoint's network architecture (SimilarityConfig() when the
  shipped model is training-free) at its initial weights (seed 0), same PCA.
- default: the shipped checkpoint, when it holds a trained network; and each --checkpoint
  FILE, named by its file name.
- aligned-window: aligned with the inner-window variants on both sides (bench/window_method.py):
  each video with a window (picture-in-picture, bars) is also scored by its window's crop, and a
  pair keeps its best score over both videos' versions, as the service's search does. Opt-in
  (`--methods ...,aligned-window`): the windows' crops are encoded once and cached.
- frame-phash, vpdq, videohash: bench/baselines.py (skipped with the reason when missing).
- api (opt-in: `--methods ...,api`): the service end to end, as a user meets it
  (bench/api_method.py): a fresh `hapvr serve` at its defaults, serving the first --checkpoint
  when given, else its shipped one; every video uploaded, every query a GET /search. Not in
  the default list because nothing of it is cached: every run ingests the whole database again
  (minutes for the full preset). "embed s" is then upload to last video indexed, "score s"
  all the searches.

Writes RESULTS/quality.md (tables), quality.json (every number) and quality_per_kind.png.
Encoder outputs and signatures are cached in DIR/.quality-cache by method (and PCA) and video
name; "embed s" then counts only what was computed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from bench.api_method import ServeError, run_api
from bench.baselines import BASELINES
from bench.dataset import ORIGINAL, PRESETS, Dataset, build_dataset, load_dataset
from bench.footage import FootageUnavailable
from model.fileio import atomic_write
from model.metrics import RetrievalMetrics, retrieval_metrics

RESULTS_DIR = Path(__file__).with_name("results")
OURS = ("training-free", "untrained")
ALIGNED = "aligned"  # the shipped checkpoint, scored as the service publishes it (bench/alignment_method.py)
WINDOWED = "aligned-window"  # aligned, with the inner-window variants of both videos (bench/window_method.py)
API = "api"  # opt-in: not run when --methods is not given
CACHE = ".quality-cache"
# "<method>-int4": that method over its regions as the feature store keeps them (opt-in, by name).
STORED_SUFFIX = "-int4"


@dataclass
class MethodRun:
    """One method's outcome: a score matrix, or why it did not run."""

    name: str
    description: str
    scores: np.ndarray | None = None  # [videos, videos], row = query
    skipped: str | None = None
    embed_s: float = 0.0
    score_s: float = 0.0
    embed_cached: bool = False  # every video's embedding or signature came from the cache
    score_cached: bool = False
    notes: list[str] = field(default_factory=list)
    localisation: dict[str, dict[str, float]] | None = None  # kind -> precision, recall, F1 (aligned only)


@dataclass
class Report:
    """Every number of one run, by method."""

    overall: dict[str, RetrievalMetrics]
    copy_query: dict[str, dict[str, RetrievalMetrics]]  # method -> view ("original" or kind)
    original_finds: dict[str, dict[str, RetrievalMetrics]]  # method -> kind


# ---------------------------------------------------------------------------------------
# Metrics over a score matrix


def same_recording_excluded(scores: np.ndarray, dataset: Dataset) -> RetrievalMetrics:
    """Overall metrics with same-recording negatives (other stretches of the query's recording) left out."""
    groups = np.array(dataset.groups)
    same = groups[dataset.queries][:, None] == groups[None, :]
    exclude = dataset.exclude() | (same & ~dataset.positives)
    return retrieval_metrics(scores[dataset.queries], dataset.positives, exclude)


def evaluate(scores: np.ndarray, dataset: Dataset) -> tuple[RetrievalMetrics, dict, dict]:
    """Overall, per query kind ("copy as query") and per kind ("original finds copy")."""
    rows = scores[dataset.queries]
    labels, exclude = dataset.positives, dataset.exclude()
    overall = retrieval_metrics(rows, labels, exclude)
    query_kinds = np.array([dataset.kinds[q] for q in dataset.queries])
    per_query_kind = {}
    for kind in [ORIGINAL, *dataset.edit_kinds]:
        pick = query_kinds == kind
        if pick.any():
            per_query_kind[kind] = retrieval_metrics(rows[pick], labels[pick], exclude[pick])
    kinds = np.array(dataset.kinds)
    originals = query_kinds == ORIGINAL
    finds = {}
    for kind in dataset.edit_kinds:
        of_kind = labels[originals] & (kinds == kind)[None, :]
        other_copies = labels[originals] & ~of_kind
        finds[kind] = retrieval_metrics(rows[originals], of_kind, exclude[originals] | other_copies)
    return overall, per_query_kind, finds


# ---------------------------------------------------------------------------------------
# Our model


def training_pca_checkpoint(log: Callable[[str], None] = print) -> Path:
    """A training-free checkpoint whose PCA is fitted on the training footage, cached."""
    from bench.footage import footage_dir, training_videos
    from model.checkpoint import ModelBundle, save_checkpoint
    from model.commands.fit_pca import fit_pca_from_videos
    from model.encoders.frame_encoder import FrameEncoder
    from model.settings import ModelSettings

    videos = training_videos()
    key = hashlib.sha1("\n".join(f"{p.name}:{p.stat().st_size}" for p in videos).encode()).hexdigest()[:12]
    path = footage_dir() / "pca" / f"training-{key}.safetensors"
    if path.is_file():
        return path
    log(f"fitting PCA on {len(videos)} training videos (once; cached in {path.parent})")
    pca = fit_pca_from_videos(videos, FrameEncoder(cache_dir=ModelSettings().model_cache_dir), 512)
    provenance = {
        "pca": {"source": "bench.footage.training_videos()", "videos": len(videos), "fps": 1.0},
        "created_by": "bench.quality",
    }
    save_checkpoint(path, ModelBundle.training_free(pca, provenance=provenance))
    return path


def _pca_key(bundle) -> str:
    digest = hashlib.sha1(bundle.backbone.encode())
    for tensor in bundle.pca.state_tensors().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _model_key(bundle) -> str:
    """The PCA, the similarity config and the network weights: what decides the scores."""
    digest = hashlib.sha1(_pca_key(bundle).encode())
    digest.update(json.dumps(bundle.similarity.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(bundle.similarity.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_cache(file: Path) -> dict[str, np.ndarray]:
    """name -> array from a cache file (empty when there is none)."""
    if not file.is_file():
        return {}
    with np.load(file) as stored:
        if "names" not in stored.files:  # an older layout: recompute
            return {}
        names = [str(n) for n in stored["names"]]
        return {name: stored[f"v{i}"] for i, name in enumerate(names)}


def _save_cache(file: Path, values: dict[str, np.ndarray]) -> None:
    names = list(values)
    arrays = {f"v{i}": values[n] for i, n in enumerate(names)}
    atomic_write(file, lambda handle: np.savez(handle, names=np.array(names), **arrays), mode=0o644)


def cached(
    dataset: Dataset, file: Path, compute: Callable[[list[Path]], list[np.ndarray]]
) -> tuple[list[np.ndarray], int]:
    """Per-video arrays by video name, computing only those the cache lacks; (arrays, computed)."""
    store = _load_cache(file)
    missing = [i for i, n in enumerate(dataset.names) if n not in store]
    if missing:
        for i, value in zip(missing, compute([dataset.paths[i] for i in missing])):
            store[dataset.names[i]] = value
        _save_cache(file, store)
    return [store[n] for n in dataset.names], len(missing)


def encode_videos(bundle, paths: Sequence[Path], log: Callable[[str], None]) -> list[np.ndarray]:
    """Encoder output [T, R, D] float16 of each video (before the network's index step), through
    the service's own file-to-features path (model.embedding.VideoEmbedder)."""
    from model.embedding import VideoEmbedder
    from model.settings import ModelSettings

    embedder = VideoEmbedder(bundle, cache_dir=ModelSettings().model_cache_dir)
    features = []
    started = time.monotonic()
    for i, path in enumerate(paths, 1):
        features.append(embedder.encode_file(path))
        if i % 100 == 0:
            log(f"  encoded {i}/{len(paths)} videos, {time.monotonic() - started:.0f} s")
    return features


def as_stored(indexed: np.ndarray) -> np.ndarray:
    """Indexed region features as the feature store gives them back (float16, then 4-bit codes)."""
    from indexer.feature_codec import decode_regions, encode_regions

    return decode_regions(*encode_regions(indexed.astype(np.float16)), indexed.shape[-1]).astype(np.float32)


def network_scores(
    similarity,
    features: Sequence[np.ndarray],
    chunk: int = 64,
    log: Callable[[str], None] | None = None,
    stored: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """[N, N] scores of `similarity` (a HapVRSimilarity) over encoder features, row = query.

    Targets are padded into batches once, grouped by length so little is padding; masks keep
    every score equal to that of the pair alone. `stored` (e.g. `as_stored`) maps each video's
    indexed regions to what the service's feature store would give back.
    """
    import torch

    started = time.monotonic()
    with torch.inference_mode():
        indexed = [similarity.index(torch.from_numpy(f.astype(np.float32))) for f in features]
        if stored is not None:
            indexed = [torch.from_numpy(stored(x.numpy())) for x in indexed]
        order = np.argsort([len(x) for x in indexed], kind="stable")
        groups = [order[i : i + chunk] for i in range(0, len(order), chunk)]
        batches = [similarity.batch([indexed[i] for i in group]) for group in groups]
        scores = np.empty((len(indexed), len(indexed)), dtype=np.float64)
        for row, query in enumerate(indexed):
            query_batch, query_mask = similarity.batch([query])
            for group, (targets, mask) in zip(groups, batches):
                output = similarity.compare(query_batch, targets, query_mask, mask)
                scores[row, group] = output.score.float().numpy()
            if log is not None and (row + 1) % 100 == 0:
                log(f"  scored {row + 1}/{len(indexed)} queries, {time.monotonic() - started:.0f} s")
    return scores


def _describe(config) -> str:
    parts = [
        "residual comparator" if config.residual else "comparator",
        "symmetric" if config.symmetric else "one direction",
    ]
    return ", ".join(parts)


def our_methods(checkpoints: Sequence[Path], log: Callable[[str], None]) -> list[tuple[str, str, Callable]]:
    """(name, description, bundle factory) for training-free, untrained and each checkpoint."""
    import torch

    from model.checkpoint import DEFAULT_CHECKPOINT, ModelBundle, load_checkpoint
    from model.similarity.config import SimilarityConfig
    from model.similarity.network import HapVRSimilarity

    def base():
        if DEFAULT_CHECKPOINT.is_file():
            return load_checkpoint(DEFAULT_CHECKPOINT), f"PCA of {DEFAULT_CHECKPOINT.name}"
        return load_checkpoint(training_pca_checkpoint(log)), "PCA fitted on the training footage"

    def training_free():
        bundle, origin = base()
        return ModelBundle.training_free(bundle.pca, backbone=bundle.backbone), origin

    def untrained():
        # The shipped network's own architecture (when it has one) at its initial weights.
        bundle, origin = base()
        config = bundle.similarity.config
        if not (config.attention and config.comparator):
            config = SimilarityConfig(dim=bundle.pca.dim)
        torch.manual_seed(0)
        network = HapVRSimilarity(config).eval()
        return ModelBundle(bundle.backbone, bundle.pca, network, mode="untrained"), f"{origin}; {_describe(config)}"

    methods = [
        ("training-free", "hierarchical Chamfer over region features (no attention, no comparator)", training_free),
        ("untrained", "the shipped network's architecture at its initial weights (seed 0)", untrained),
    ]
    from bench.results_page import shipped_method  # the row RESULTS.md reads as the shipped model

    shipped_has_network = shipped_method() == DEFAULT_CHECKPOINT.stem
    if shipped_has_network and all(Path(p).resolve() != DEFAULT_CHECKPOINT.resolve() for p in checkpoints):
        checkpoints = [DEFAULT_CHECKPOINT, *checkpoints]  # the model the service ships is always measured
    for path in checkpoints:
        methods.append(
            (
                Path(path).stem,
                f"checkpoint {path}",
                lambda p=path: (load_checkpoint(p), f"its own PCA ({Path(p).name})"),
            )
        )
    return methods


# ---------------------------------------------------------------------------------------
# Running methods


def run_ours(
    dataset: Dataset, checkpoints: Sequence[Path], wanted: set[str] | None, log: Callable[[str], None]
) -> list[MethodRun]:
    runs = []
    encoded: dict[str, float] = {}
    for name, description, factory in our_methods(checkpoints, log):
        compact = f"{name}{STORED_SUFFIX}"  # the same model over the store's compact regions, by name only
        if wanted is not None and name not in wanted and compact not in wanted:
            continue
        run = MethodRun(name, description)
        try:
            bundle, origin = factory()
        except (ValueError, OSError) as error:  # CheckpointError is a ValueError
            run.skipped = str(error).splitlines()[0]
            runs.append(run)
            continue
        run.notes.append(origin)
        started = time.monotonic()
        key = _pca_key(bundle)
        file = dataset.root / CACHE / f"regions-{key}.npz"
        features, computed = cached(dataset, file, partial(encode_videos, bundle, log=log))
        run.embed_s = encoded.setdefault(key, time.monotonic() - started)
        run.embed_cached = computed == 0
        started = time.monotonic()
        score_file = dataset.root / CACHE / f"scores-{_model_key(bundle)}.npz"
        stored = _load_cache(score_file)
        if list(stored) == dataset.names:
            run.scores = np.stack([stored[n] for n in dataset.names])
            run.score_cached = True
        else:
            run.scores = network_scores(bundle.similarity, features, log=log)
            _save_cache(score_file, dict(zip(dataset.names, run.scores)))
        run.score_s = time.monotonic() - started
        log(f"{name}: scored {len(features)}x{len(features)} pairs in {run.score_s:.0f} s")
        if wanted is None or name in wanted:
            runs.append(run)
        if wanted is not None and compact in wanted:
            runs.append(_stored_run(compact, description, bundle, features, run, log))
    return runs


def _stored_run(
    name: str, description: str, bundle, features: list[np.ndarray], plain: MethodRun, log: Callable[[str], None]
) -> MethodRun:
    """A method scored over its region features as the feature store keeps them (4-bit codes)."""
    run = MethodRun(name, f"{description}; regions through the feature store's 4-bit codes")
    run.notes = [*plain.notes, "indexer.feature_codec round trip"]
    run.embed_s, run.embed_cached = plain.embed_s, plain.embed_cached
    started = time.monotonic()
    run.scores = network_scores(bundle.similarity, features, log=log, stored=as_stored)
    run.score_s = time.monotonic() - started
    log(f"{name}: scored {len(features)}x{len(features)} pairs in {run.score_s:.0f} s")
    return run


def run_windowed(dataset: Dataset, wanted: set[str] | None, log: Callable[[str], None]) -> list[MethodRun]:
    """The published score with inner-window variants on both sides, as the service searches."""
    from bench.alignment_method import indexed_features
    from bench.window_method import encode_windows, window_scores
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    if wanted is None or WINDOWED not in wanted:
        return []
    run = MethodRun(WINDOWED, "aligned, plus each video's inner-window crop as another version on both sides")
    bundle = load_checkpoint(DEFAULT_CHECKPOINT)
    started = time.monotonic()
    key = _pca_key(bundle)
    encoded, computed = cached(
        dataset, dataset.root / CACHE / f"regions-{key}.npz", partial(encode_videos, bundle, log=log)
    )
    crops, computed_crops = cached(
        dataset, dataset.root / CACHE / f"windows-{key}.npz", partial(encode_windows, bundle, log=log)
    )
    run.embed_s, run.embed_cached = time.monotonic() - started, computed + computed_crops == 0
    features = indexed_features(bundle, encoded)
    windows = [indexed_features(bundle, [crop])[0] if len(crop) else None for crop in crops]
    kinds = [kind for kind, window in zip(dataset.kinds, windows) if window is not None]
    run.notes.append(
        f"windows found in {len(kinds)} of {len(windows)} videos: "
        + ", ".join(f"{kind} {kinds.count(kind)}" for kind in sorted(set(kinds)))
    )
    started = time.monotonic()
    run.scores = window_scores(bundle, features, windows, log)
    run.score_s = time.monotonic() - started
    log(f"{WINDOWED}: scored {len(features)}x{len(features)} pairs in {run.score_s:.0f} s")
    return [run]


def run_aligned(dataset: Dataset, wanted: set[str] | None, log: Callable[[str], None]) -> list[MethodRun]:
    """The shipped checkpoint's published score (alignment + calibration) and its ranges' localisation."""
    from bench.alignment_method import aligned_scores, indexed_features, localisation, tier_quality
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    if wanted is not None and ALIGNED not in wanted:
        return []
    run = MethodRun(ALIGNED, "shipped checkpoint; score = calibrated alignment (strength x coverage), as the service")
    bundle = load_checkpoint(DEFAULT_CHECKPOINT)
    started = time.monotonic()
    encoded, computed = cached(
        dataset, dataset.root / CACHE / f"regions-{_pca_key(bundle)}.npz", partial(encode_videos, bundle, log=log)
    )
    run.embed_s, run.embed_cached = time.monotonic() - started, computed == 0
    features = indexed_features(bundle, encoded)
    started = time.monotonic()
    run.scores, tiers, segments = aligned_scores(bundle, features, log)
    run.score_s = time.monotonic() - started
    edits = json.loads((dataset.root / "manifest.json").read_text()).get("edit", {})
    durations = [float(f.duration) for f in features]
    run.localisation = localisation(dataset, edits, durations, lambda q, t: segments.get((q, t), []))
    for name, values in tier_quality(dataset, tiers).items():
        run.notes.append(
            f"tiers {name}: precision {values['precision']:.3f}, recall {values['recall']:.3f} ({values['pairs']} pairs)"
        )
    log(f"{ALIGNED}: scored {len(features)}x{len(features)} pairs in {run.score_s:.0f} s")
    return [run]


def run_service(
    dataset: Dataset, checkpoints: Sequence[Path], wanted: set[str] | None, log: Callable[[str], None]
) -> list[MethodRun]:
    """The api method, when asked for by name."""
    if wanted is None or API not in wanted:
        return []
    run = MethodRun(API, "the service end to end: hapvr serve, POST /videos, GET /search")
    try:
        result = run_api(dataset.names, dataset.paths, dataset.queries, checkpoints[0] if checkpoints else None, log)
    except ServeError as error:  # the report still gets the other methods
        log(f"{API}: failed: {error}")
        run.skipped = f"service failed: {str(error).splitlines()[0]}"
        return [run]
    run.scores, run.embed_s, run.score_s = result.scores, result.embed_s, result.score_s
    run.notes += result.notes
    log(f"{API}: ingest {run.embed_s:.0f} s, {len(dataset.queries)} searches {run.score_s:.0f} s")
    return [run]


def _signature_job(job: tuple[str, Path]) -> np.ndarray:
    name, path = job
    return BASELINES[name].signature(path)


def run_baselines(
    dataset: Dataset, wanted: set[str] | None, workers: int, log: Callable[[str], None]
) -> list[MethodRun]:
    runs = []
    for name, baseline in BASELINES.items():
        if wanted is not None and name not in wanted:
            continue
        run = MethodRun(name, baseline.description)
        run.skipped = baseline.unavailable()
        if run.skipped:
            log(f"{name}: skipped ({run.skipped})")
            runs.append(run)
            continue
        file = dataset.root / CACHE / f"signatures-{name}.npz"
        started = time.monotonic()

        def compute(paths: list[Path], name: str = name) -> list[np.ndarray]:
            jobs = [(name, p) for p in paths]
            if workers > 1 and len(jobs) > 1:
                with ProcessPoolExecutor(workers) as pool:
                    return list(pool.map(_signature_job, jobs, chunksize=4))
            return [_signature_job(job) for job in jobs]

        signatures, computed = cached(dataset, file, compute)
        run.embed_s = time.monotonic() - started
        run.embed_cached = computed == 0
        started = time.monotonic()
        run.scores = baseline.score_all(signatures)
        run.score_s = time.monotonic() - started
        log(f"{name}: signatures in {run.embed_s:.0f} s, scores in {run.score_s:.1f} s")
        runs.append(run)
    return runs


# ---------------------------------------------------------------------------------------
# Report


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"


def write_report(dataset: Dataset, runs: Sequence[MethodRun], results: Path, command: str) -> Report:
    results.mkdir(parents=True, exist_ok=True)
    done = [r for r in runs if r.scores is not None]
    overall, copy_query, finds = {}, {}, {}
    for run in done:
        overall[run.name], copy_query[run.name], finds[run.name] = evaluate(run.scores, dataset)
    report = Report(overall, copy_query, finds)

    kinds = dataset.kinds
    counts = {k: kinds.count(k) for k in set(kinds)}
    lines = [
        "# Retrieval quality on the near-duplicate benchmark",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Dataset: `{dataset.root.name}` (builder parameters: `{json.dumps(dataset.params, sort_keys=True)}`): "
        f"{len(dataset.names)} videos = {counts.get(ORIGINAL, 0)} originals, "
        f"{counts.get('distractor', 0)} distractors, "
        f"{len(dataset.names) - counts.get(ORIGINAL, 0) - counts.get('distractor', 0)} edited copies "
        f"({len(dataset.edit_kinds)} kinds); {len(dataset.queries)} queries (every copy and every original), "
        "each ranked against the whole database without itself. Source footage: the held-out side of "
        "bench/footage.py (no recording of the training side).",
        "",
        "## Overall",
        "",
        "| method | mAP | µAP | R@1 | µAP, same-recording negatives excluded | queries | embed s | score s | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        if run.scores is None:
            lines.append(f"| {run.name} | - | - | - | - | - | - | - | skipped: {run.skipped} |")
            continue
        m = overall[run.name]
        distinct = same_recording_excluded(run.scores, dataset)
        notes = "; ".join([run.description, *run.notes])
        embed = "cached" if run.embed_cached else f"{run.embed_s:.0f}"
        score = "cached" if run.score_cached else f"{run.score_s:.0f}"
        lines.append(
            f"| {run.name} | {_fmt(m.map)} | {_fmt(m.micro_ap)} | {_fmt(m.recall_at_1)} | "
            f"{_fmt(distinct.micro_ap)} | {m.queries} | {embed} | {score} | {notes} |"
        )
    same_group = sum(
        1
        for q in dataset.queries
        if dataset.kinds[q] == ORIGINAL
        and any(
            dataset.groups[i] == dataset.groups[q]
            and dataset.sources[i] != dataset.names[q]
            and i != q
            and dataset.kinds[i] in (ORIGINAL, "distractor")
            for i in range(len(dataset.names))
        )
    )
    lines += [
        "",
        "embed s: decoding and encoding (or hashing) every video once; methods sharing "
        "an encoder and PCA share that time (api: first upload to last video indexed). score s: all pairs "
        '(api: all the searches). "cached": taken from '
        f"{CACHE} in the dataset folder (delete it to time a method again).",
        "",
        "Reading the numbers: ties count against a method (model/metrics.py), which matters for "
        "coarse scores such as videohash's 64 bits. "
        f"{same_group} of the {counts.get(ORIGINAL, 0)} originals share their recording with another "
        "original or a distractor (another stretch of the same fixed camera or talking head): "
        "those are the hardest negatives, and they cap µAP for every method that scores "
        "appearance alone. Copies of different originals that share only a background stretch "
        "(pip and splice copies over the same background footage, which the database does not hold) "
        "are left out of each other's rankings. Copies are made from segments at the builder's short side "
        f"({dataset.params.get('short_side')} px), so reencode (crf 38 to 44) is harsh.",
        "",
    ]
    localised = [r for r in done if r.localisation]
    if localised:
        lines += [
            "## Localisation of copied segments",
            "",
            "Ranges of (copy as query, its original) against the builder's known offsets "
            "(bench/alignment_method.py): precision = share of the predicted ranges inside the truth, "
            "recall = share of the truth covered, both videos' axes averaged; F1 per pair, then the mean.",
            "",
            "| method | kind | precision | recall | F1 | ranges per pair | pairs |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in localised:
            assert run.localisation is not None
            for kind, v in run.localisation.items():
                lines.append(
                    f"| {run.name} | {kind} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | "
                    f"{v['ranges_per_pair']:.2f} | {int(v['pairs'])} |"
                )
        lines.append("")
    names = [r.name for r in done]
    views = [ORIGINAL, *dataset.edit_kinds]
    for title, table, rows, explain in (
        (
            "Per edit kind: copy as query",
            copy_query,
            views,
            "Rows: the queries of that kind (a copy of that edit, or an original), ranked over the whole "
            "database; positives are the videos that share at least a second of footage with the query "
            "(its original and the copies of it that show an overlapping stretch; bench/shared_footage.py).",
        ),
        (
            "Per edit kind: original finds copy",
            finds,
            dataset.edit_kinds,
            "The originals as queries, with only that kind's copies as positives (the original's other "
            "copies left out of the ranking): how well each edit is found from its source.",
        ),
    ):
        lines += [f"## {title}", "", explain, ""]
        for metric, attr in (("mAP", "map"), ("µAP", "micro_ap"), ("R@1", "recall_at_1")):
            lines += [f"### {metric}", "", "| kind | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            for view in rows:
                cells = [_fmt(getattr(table[n][view], attr)) if view in table[n] else "-" for n in names]
                lines.append(f"| {view} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["![mAP and µAP per edit kind, copy as query](quality_per_kind.png)", ""]
    (results / "quality.md").write_text("\n".join(lines))

    numbers = {
        "dataset": dataset.root.name,
        "params": dataset.params,
        "command": command,
        "methods": {
            r.name: {
                "skipped": r.skipped,
                "embed_s": r.embed_s,
                "score_s": r.score_s,
                "embed_cached": r.embed_cached,
                "score_cached": r.score_cached,
                "notes": [r.description, *r.notes],
            }
            for r in runs
        },
        "overall": {n: m.as_dict() for n, m in overall.items()},
        "same_recording_excluded": {r.name: same_recording_excluded(r.scores, dataset).as_dict() for r in done},
        "localisation": {r.name: r.localisation for r in localised},
        "copy_query": {n: {k: m.as_dict() for k, m in v.items()} for n, v in copy_query.items()},
        "original_finds": {n: {k: m.as_dict() for k, m in v.items()} for n, v in finds.items()},
    }
    (results / "quality.json").write_text(json.dumps(numbers, indent=1))
    plot_per_kind(report, views, results / "quality_per_kind.png")
    from bench.results_page import refresh  # the one-page summary follows every results write

    refresh(results)
    return report


def plot_per_kind(report: Report, views: Sequence[str], out: Path) -> None:
    """Grouped bars: one group per kind, one bar per method; mAP above, µAP below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.copy_query)
    if not names:
        return
    fig, axes = plt.subplots(2, 1, figsize=(max(10, len(views) * 0.9), 8), sharex=True)
    width = 0.8 / len(names)
    x = np.arange(len(views))
    for axis, (label, attr) in zip(axes, (("mAP", "map"), ("µAP", "micro_ap"))):
        for i, name in enumerate(names):
            values = [
                getattr(report.copy_query[name][v], attr) if v in report.copy_query[name] else np.nan for v in views
            ]
            axis.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name)
        axis.set_ylabel(f"{label} (copy as query)")
        axis.set_ylim(0, 1.02)
        axis.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        ncol=min(len(names), 6),
        fontsize=9,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.95),
        frameon=False,
    )
    axes[1].set_xticks(x, views, rotation=30, ha="right")
    fig.suptitle("Near-duplicate retrieval quality per edit kind")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality", description="Score our models and peer tools on the benchmark."
    )
    parser.add_argument(
        "--dataset",
        required=True,
        help="folder written by `python -m bench.dataset` (or its manifest.json), or a "
        f"preset name ({', '.join(PRESETS)}): built in the footage cache when missing",
    )
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=[], help="also score this checkpoint (repeatable)"
    )
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated subset of: {', '.join([*OURS, ALIGNED, WINDOWED, *BASELINES, API])} "
        f"and the checkpoints' file stems, each also with the suffix {STORED_SUFFIX} (scored over the "
        f"feature store's 4-bit regions; by name only) (default: all but {API}, {WINDOWED} and the {STORED_SUFFIX} ones)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        help="where quality.md, quality.json and the plot go (default bench/results)",
    )
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes for the peer tools' hashing"
    )
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if args.dataset in PRESETS and not Path(args.dataset).exists():
            dataset = load_dataset(build_dataset(None, PRESETS[args.dataset], log=log).parent)
        else:
            dataset = load_dataset(args.dataset)
    except FootageUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as error:
        print(
            f"error: cannot read the benchmark at {args.dataset}: {error} "
            "(build it with `python -m bench.dataset --out DIR`)",
            file=sys.stderr,
        )
        return 2
    wanted = set(args.methods.split(",")) if args.methods else None
    runs = (
        run_ours(dataset, args.checkpoint, wanted, log)
        + run_aligned(dataset, wanted, log)
        + run_windowed(dataset, wanted, log)
        + run_service(dataset, args.checkpoint, wanted, log)
        + run_baselines(dataset, wanted, args.workers, log)
    )
    command = "python -m bench.quality " + " ".join(
        [f"--dataset {args.dataset}"]
        + [f"--checkpoint {c}" for c in args.checkpoint]
        + ([f"--methods {args.methods}"] if args.methods else [])
    )
    report = write_report(dataset, runs, args.results, command)
    for name, m in report.overall.items():
        print(f"{name:16} mAP {_fmt(m.map)}  µAP {_fmt(m.micro_ap)}  R@1 {_fmt(m.recall_at_1)}")
    for run in runs:
        if run.skipped:
            print(f"{run.name:16} skipped: {run.skipped}")
    print(f"wrote {args.results / 'quality.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
