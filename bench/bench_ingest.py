"""Ingest throughput: seconds of video embedded per wall-clock second, beside vPDQ on the same files.

The embedded path is the service's worker path without the catalog (decode at 1 fps, frame
encoder, indexing, frame vectors), with the next file decoded while the current one encodes.
vPDQ (PyPI `vpdq`, optional) hashes the same files at one frame per second in the same run.
Footage: held-out registry clips cut to 640x360-class segments (bench/footage.py). Appends a
row to bench/results/ingest.md.

    python -m bench.bench_ingest [--segments 12] [--seconds 20] [--label NOTE]
    python -m bench.bench_ingest --window [--pip DATASET]   # without and with the inner window, one run

`--window` embeds every file twice in the same run, without and with the inner-window search
(and the window's crop where one is found), alternating the order file by file, and appends a
row for each. `--pip DATASET` adds that benchmark's picture-in-picture copies to the files, so
the crop's cost is measured too (unedited footage only pays for looking).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.results_page import refresh as refresh_page

RESULTS = Path(__file__).parent / "results" / "ingest.md"
HEADER = (
    "# Ingest throughput\n\n"
    "Regenerate: `python -m bench.bench_ingest` (appends a row). Seconds of video per wall-clock "
    "second on held-out registry footage at 360p, sampled at 1 fps; vPDQ hashes the same files "
    "in the same run (one hash per second). Load: the 1-minute load average before the run.\n\n"
    "| date | machine | files | video s | ours s | ours x real time | vPDQ s | vPDQ x real time | ours / vPDQ | load | note |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--label", default="")
    parser.add_argument("--window", action="store_true", help="time without and with the inner window, one run")
    parser.add_argument("--repeat", type=int, default=3, help="with --window: embeds per file and mode (fastest kept)")
    parser.add_argument("--pip", default=None, help="with --window: also this benchmark's pip copies (e.g. full)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `hapvr serve` runs

    from bench.footage import heldout_videos, make_segments
    from model.checkpoint import load_default
    from model.embedding import VideoEmbedder
    from model.settings import ModelSettings
    from model.video import probe_video

    files = make_segments(heldout_videos(), args.seconds, args.segments, short_side=360)
    if args.pip:
        files += _pip_copies(args.pip)
    total = sum(probe_video(path).duration or 0.0 for path in files)
    load = os.getloadavg()[0]

    bundle = load_default()
    embedder = VideoEmbedder(bundle, encoder=bundle.frame_encoder(cache_dir=ModelSettings().model_cache_dir))
    embedder.embed(files[0])  # warm-up: ONNX session and thread pools
    if args.window:
        _window_rows(embedder, files, total, load, args.label, args.repeat)
        return
    start = time.perf_counter()
    for path, result in embedder.embed_many(files):
        if isinstance(result, Exception):
            raise SystemExit(f"{path}: {result}")
    ours = time.perf_counter() - start

    try:
        from bench.baselines import vpdq_signature

        start = time.perf_counter()
        for path in files:
            vpdq_signature(path)
        vpdq = time.perf_counter() - start
    except ImportError:
        vpdq = None

    vpdq_cells = ("-", "-", "-") if vpdq is None else (f"{vpdq:.1f}", f"{total / vpdq:.0f}x", f"{vpdq / ours:.2f}")
    row = (
        f"| {datetime.now():%Y-%m-%d %H:%M} | {platform.machine()} x{os.cpu_count()} | {len(files)} | {total:.0f} "
        f"| {ours:.1f} | {total / ours:.0f}x | {vpdq_cells[0]} | {vpdq_cells[1]} | {vpdq_cells[2]} | {load:.1f} "
        f"| {args.label or 'vPDQ not installed' if vpdq is None else args.label} |\n"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    with RESULTS.open("a") as results:
        results.write(row)
    refresh_page(RESULTS.parent)
    print(HEADER.splitlines()[-2] + "\n" + row)


def _pip_copies(dataset: str) -> list[Path]:
    """The picture-in-picture copies of a benchmark (a preset name or a folder)."""
    from bench.dataset import PRESETS, build_dataset, load_dataset

    root = build_dataset(None, PRESETS[dataset]).parent if dataset in PRESETS else Path(dataset)
    loaded = load_dataset(root)
    return [path for path, kind in zip(loaded.paths, loaded.kinds) if kind == "pip"]


def _window_rows(embedder, files: list[Path], total: float, load: float, label: str, repeat: int) -> None:  # type: ignore[no-untyped-def]
    """Each file embedded without and with the inner window, `repeat` times each (order alternating);
    a file's time per mode is its fastest, which keeps other processes' bursts out of the ratio. Two rows."""
    best: dict[bool, list[float]] = {False: [np.inf] * len(files), True: [np.inf] * len(files)}
    found = 0
    for round_number in range(repeat):
        for number, path in enumerate(files):
            for with_window in (False, True) if (number + round_number) % 2 == 0 else (True, False):
                start = time.perf_counter()
                result = embedder.embed_detailed(path, with_window=with_window)
                best[with_window][number] = min(best[with_window][number], time.perf_counter() - start)
                found += round_number == 0 and with_window and result.window is not None
    seconds = {mode: float(sum(times)) for mode, times in best.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    rows = ""
    for with_window, note in ((False, "without the inner window"), (True, f"with the inner window ({found} found)")):
        took = seconds[with_window]
        note = (
            f"{note}; {60 * took / total:.2f} s per video-minute; with/without {seconds[True] / seconds[False]:.3f} "
            f"(fastest of {repeat} per file)"
        )
        rows += (
            f"| {datetime.now():%Y-%m-%d %H:%M} | {platform.machine()} x{os.cpu_count()} | {len(files)} | {total:.0f} "
            f"| {took:.1f} | {total / took:.0f}x | - | - | - | {load:.1f} | {note}{'; ' + label if label else ''} |\n"
        )
    with RESULTS.open("a") as results:
        results.write(rows)
    refresh_page(RESULTS.parent)
    print(HEADER.splitlines()[-2] + "\n" + rows)


if __name__ == "__main__":
    main()
