"""`hapvr train-descriptor VIDEOS --out DIR`: train the frame descriptor for copy detection.

    hapvr train-descriptor VIDEOS --out runs/descriptor [--init CHECKPOINT] [flags]

VIDEOS is a folder (searched recursively) or a manifest, as for `hapvr train`. The backbone of
the --init checkpoint (default: the shipped one) stays frozen and its PCA is where the
projection starts (model.train.descriptor). Writes DIR/views.npz (the backbone's regions of
every copy, reused by a rerun with the same data and copy settings), DIR/history.json and
DIR/descriptor.safetensors: the --init checkpoint with the trained descriptor, its provenance
extended. Bad data or settings end the command with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# option -> (DescriptorConfig field, type, help)
FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--fps", "fps", float, "frames sampled per second of video (default 1)"),
    ("--max-frames-per-video", "max_frames_per_video", int, "long videos are sampled evenly down to this (240)"),
    ("--views", "views", int, "views per frame: the frame and VIEWS-1 edited copies (default 6)"),
    ("--flip-p", "flip_p", float, "chance a copy is also mirrored; 0: not taught flips (default 0.3)"),
    ("--steps", "steps", int, "optimiser steps (default 300)"),
    ("--batch-size", "batch_size", int, "frames per step, two views each (default 128)"),
    ("--lr", "lr", float, "AdamW learning rate, cosine to zero (default 1e-3)"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay on the correction (default 0)"),
    ("--temperature", "temperature", float, "InfoNCE temperature (default 0.05)"),
    ("--koleo", "koleo", float, "weight of the KoLeo spread term (default 0.1)"),
    ("--near-seconds", "near_seconds", float, "same-video frames this close are not negatives (default 2)"),
    ("--val-block-seconds", "val_block_seconds", float, "every fifth stretch this long is validation (20)"),
    ("--eval-every", "eval_every", int, "validate every this many steps (default 50)"),
    ("--seed", "seed", int, "seed of the copies and the batches (default 0)"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-descriptor", help="train the frame descriptor for copy detection (frozen backbone)"
    )
    parser.add_argument("data", type=Path, help="folder of videos (searched recursively) or a manifest file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--init", type=Path, default=None, help="checkpoint to start from (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    for option, dest, kind, help_text in FLAGS:
        parser.add_argument(option, dest=dest, type=kind, default=None, help=help_text)
    parser.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> list[str]:
    """The command as given (for the checkpoint's provenance), rebuilt from the parsed flags."""
    words = ["hapvr", "train-descriptor", str(args.data), "--out", str(args.out)]
    for option, dest in (("--init", "init"), ("--threads", "threads"), *((f[0], f[1]) for f in FLAGS)):
        if getattr(args, dest) is not None:
            words += [option, str(getattr(args, dest))]
    return words


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ValueError as error:  # DataError, CheckpointError, bad settings, undecodable videos
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"hapvr train-descriptor: error: {message}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import json
    import logging
    import time

    import torch

    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, save_checkpoint
    from model.provenance import portable_path, portable_words
    from model.settings import ModelSettings
    from model.train.data import list_videos
    from model.train.descriptor import (
        FEATURES_FILE,
        DescriptorConfig,
        compute_view_features,
        describe,
        features_key,
        load_features,
        save_features,
        train_head,
        with_descriptor,
    )

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    settings = {dest: getattr(args, dest) for _, dest, _, _ in FLAGS if getattr(args, dest) is not None}
    config = DescriptorConfig(**settings)
    config.check()
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    videos = list_videos(args.data)
    init_path = args.init or DEFAULT_CHECKPOINT
    init = load_checkpoint(init_path)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    encoder = init.frame_encoder(cache_dir=ModelSettings().model_cache_dir, threads=args.threads)
    encoder.pca = None  # the head is trained on the backbone's own regions
    key = features_key(videos, config, f"{init.backbone}|{init.backbone_weights or ''}")
    features = load_features(out / FEATURES_FILE, key)
    if features is None:
        log(f"making {config.views} views of frames of {len(videos)} videos and encoding them (once)")
        features = compute_view_features(videos, encoder, config, log)
        save_features(out / FEATURES_FILE, features, key)
    else:
        log(f"views of {len(features.video)} frames from {out / FEATURES_FILE}")
    features_s = time.monotonic() - started

    started = time.monotonic()
    result = train_head(features, init.pca, config, log)
    training_s = time.monotonic() - started
    best = next(record for record in result.history if int(record["step"]) == result.best_step)
    provenance = {
        "command": " ".join(portable_words(command_line(args))),
        "init": portable_path(init_path),
        "data": {
            "source": portable_path(args.data),
            "videos": sorted(path.name for path in videos),
            "frames": len(features.video),
            "train_frames": result.train_frames,
            "val_frames": result.val_frames,
        },
        "config": describe(config),
        "best_step": result.best_step,
        "validation": {"step_0": result.history[0], "best": best},
        "seconds": {"features": round(features_s, 1), "training": round(training_s, 1)},
    }
    (out / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    path = save_checkpoint(out / "descriptor.safetensors", with_descriptor(init, result, provenance))
    print(
        f"descriptor from step {result.best_step} of {config.steps}: validation R@1 {best['val_R@1']:.3f}"
        f" MRR {best['val_MRR']:.3f} (step 0: {result.history[0]['val_R@1']:.3f}, {result.history[0]['val_MRR']:.3f}):"
        f" {path}"
    )
    return 0
