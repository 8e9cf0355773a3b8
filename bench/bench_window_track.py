"""Inner windows over the whole video (model.window_track): what is found, what is cropped, what it costs.

    python -m bench.bench_window_track [--dataset full] [--long 6]

Three measurements, printed as markdown (results: bench/results/window.md):
1. The benchmark's videos (8 s at 1 fps: one batch each): windows found by the first-batch rule
   that came before (find the window in batch 0, crop every frame) and by WindowTrack, per
   kind, and the share of a found window's frames WindowTrack crops.
2. False windows on long unedited footage: `--long` videos of about 96 s (three batches) made of
   the benchmark's unedited segments (originals, distractors, backgrounds) one after another in
   a shuffled order, and the held-out sources longer than one batch, whole; every batch is
   searched while no window shows, so these count windows per batch searched.
3. The per-batch cost of WindowTrack.feed where nothing shows (a search per batch) at the
   decode size, beside the frame encoder's time for the same batch.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bench.dataset import Dataset

LONG_SECONDS = 96
LONG_FPS = 10
LONG_SIZE = (640, 360)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="full")
    parser.add_argument("--long", type=int, default=6, help="long unedited videos to make")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from bench.dataset import PRESETS, build_dataset, default_dir, load_dataset

    root = default_dir(PRESETS[args.dataset]) if args.dataset in PRESETS else Path(args.dataset)
    if not (root / "manifest.json").is_file():
        build_dataset(root, PRESETS[args.dataset])
    dataset = load_dataset(root)
    print(f"load {os.getloadavg()[0]:.2f}")
    benchmark_windows(dataset)
    long_videos = make_long_videos(dataset, args.long)
    false_windows(long_videos + long_sources())
    batch_cost(long_videos[:2])


def batches(path: Path) -> list[np.ndarray]:
    from model.video import VideoFrames

    return list(VideoFrames(path, fps=1.0, short_side=256, batch_size=32))


def track(frames: list[np.ndarray]) -> tuple[int, int, int]:
    """(windows found, frames cropped, batches searched) of one decode."""
    from model.window_track import WindowTrack

    tracker = WindowTrack()
    cropped = searched = 0
    for batch in frames:
        searched += not tracker.showing
        cropped += sum(len(crop.rows) for crop in tracker.feed(batch))
    cropped += sum(len(crop.rows) for crop in tracker.finish())
    return len(tracker.windows), cropped, searched


def benchmark_windows(dataset: Dataset) -> None:
    from model.window_track import locate

    first_rule: Counter[str] = Counter()
    tracked: Counter[str] = Counter()
    kept: list[float] = []
    for path, kind in zip(dataset.paths, dataset.kinds):
        frames = batches(path)
        before = locate(frames[0]) is not None
        windows, cropped, _ = track(frames)
        first_rule[kind] += before
        tracked[kind] += windows > 0
        if before and windows:
            kept.append(cropped / sum(len(batch) for batch in frames))
    print("\n| kind | videos | first-batch rule | WindowTrack |\n|---|---|---|---|")
    for kind in sorted(set(dataset.kinds)):
        count = dataset.kinds.count(kind)
        print(f"| {kind} | {count} | {first_rule[kind]} | {tracked[kind]} |")
    share = np.array(kept)
    print(
        f"\nframes cropped where both found a window: mean {share.mean():.3f}, "
        f"all frames in {(share == 1).sum()} of {len(share)}, least {share.min():.3f}"
    )


def make_long_videos(dataset: Dataset, count: int) -> list[Path]:
    """About LONG_SECONDS of unedited segments one after another (cached beside the dataset)."""
    from bench.edits import Clip, fit, read_clip, write_clip

    unedited = [p for p, k in zip(dataset.paths, dataset.kinds) if k in ("original", "distractor")]
    unedited += sorted((dataset.root / "backgrounds").glob("*.mp4"))
    like = Clip(np.zeros((1, LONG_SIZE[1], LONG_SIZE[0], 3), np.uint8), Fraction(LONG_FPS))
    out_dir = dataset.root / "long-unedited"
    paths = []
    for number in range(count):
        out = out_dir / f"long-{number}.mp4"
        if not out.is_file():
            order = np.random.default_rng(number).permutation(len(unedited))
            parts, seconds = [], 0.0
            for index in order:
                clip = read_clip(unedited[index])
                parts.append(fit(clip, like, seconds=clip.duration))
                seconds += clip.duration
                if seconds >= LONG_SECONDS:
                    break
            write_clip(Clip(np.concatenate(parts), like.fps), out)
        paths.append(out)
    return paths


def long_sources() -> list[Path]:
    """Held-out source files longer than one batch at 1 fps."""
    from bench.footage import heldout_videos
    from model.video import probe_video

    return [path for path in heldout_videos(fetch=False) if (probe_video(path).duration or 0) > 32]


def false_windows(paths: list[Path]) -> None:
    print("\n| unedited video | seconds | batches searched | windows found | frames cropped |\n|---|---|---|---|---|")
    for path in paths:
        frames = batches(path)
        windows, cropped, searched = track(frames)
        print(f"| {path.name} | {sum(len(b) for b in frames)} | {searched} | {windows} | {cropped} |")


def batch_cost(paths: list[Path]) -> None:
    from model.checkpoint import load_default
    from model.settings import ModelSettings
    from model.window_track import WindowTrack

    encoder = load_default().frame_encoder(batch_size=32, cache_dir=ModelSettings().model_cache_dir)
    feed_s, encode_s, count = [], [], 0
    for path in paths:
        for batch in batches(path):
            encoder.encode(np.ascontiguousarray(batch))  # warm
            mark = time.perf_counter()
            WindowTrack().feed(batch)
            feed_s.append(time.perf_counter() - mark)
            mark = time.perf_counter()
            encoder.encode(np.ascontiguousarray(batch))
            encode_s.append(time.perf_counter() - mark)
            count += len(batch)
    print(
        f"\nper batch of {count // len(feed_s)} frames (load {os.getloadavg()[0]:.2f}): WindowTrack.feed searching "
        f"median {1000 * np.median(feed_s):.1f} ms, frame encoder median {1000 * np.median(encode_s):.1f} ms, "
        f"ratio {np.median(feed_s) / np.median(encode_s):.3f}"
    )


if __name__ == "__main__":
    main()
