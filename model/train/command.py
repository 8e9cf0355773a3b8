"""`hapvr train`: self-supervised training of the similarity network on unlabeled videos.

    hapvr train VIDEOS --out runs/x [--config train.yaml] [flags]
    hapvr train --resume runs/x [--steps N]          # continue a run (its config.json is the base)
    torchrun --nproc_per_node 2 -m app.cli train VIDEOS --out runs/x   # one process per GPU

Settings come from the defaults, then the config file, then flags (see model.train.config).
Errors in the data or the settings end the command with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# Flag dest -> config path; flags left out keep the config file's (or the default) value.
_FLAGS: dict[str, tuple[str, str]] = {}


def _add(group: argparse._ArgumentGroup, flag: str, key: str, **kwargs: Any) -> None:
    dest = key.replace(".", "__")
    _FLAGS[dest] = (key, flag)
    if "action" not in kwargs and "choices" not in kwargs:
        kwargs.setdefault("metavar", flag.lstrip("-").split("-")[-1].upper())
    group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the similarity network on unlabeled videos (self-supervised)",
        description="Self-supervised HAP-VR training on a folder or manifest of unlabeled videos.",
    )
    parser.add_argument("data", nargs="?", default=None, help="folder of videos (searched recursively) or a manifest file")
    parser.add_argument("--config", type=Path, default=None, help="YAML or JSON file of settings (flags override it)")

    group = parser.add_argument_group("data")
    _add(group, "--out", "run.out", help="output folder: checkpoints, config, metrics")
    _add(group, "--cache-dir", "data.cache_dir", help="frame cache folder (default OUT/cache)")
    _add(group, "--fps", "data.fps", type=float, help="frames per second sampled (default 1)")
    _add(group, "--clip-frames", "data.clip_frames", type=int, help="frames per training view (default 32)")
    _add(group, "--segment-seconds", "data.segment_seconds", type=float, help="long videos are cut into clips this long (default 60)")
    _add(group, "--min-clip-frames", "data.min_clip_frames", type=int, help="drop clips shorter than this (default 4)")

    group = parser.add_argument_group("model")
    _add(group, "--init", "model.init", help="checkpoint whose backbone and PCA to use (e.g. from `hapvr fit-pca`); default: fit PCA on the data")
    _add(group, "--backbone", "model.backbone", help="frame encoder backbone when fitting PCA here (default efficientnet_lite0)")
    _add(group, "--backbone-weights", "model.backbone_weights", help="weights file for backbones no package ships")
    _add(group, "--pca-dim", "model.pca_dim", type=int, help="region feature size after PCA (default 512)")
    _add(group, "--pca-frames", "model.pca_frames", type=int, help="frames used to fit PCA (default 4000)")
    _add(group, "--rho-v", "model.rho_v", type=float, help="video-level TopK rate (default 0.03)")
    _add(group, "--symmetric", "model.symmetric", action="store_true", help="average both comparison directions")
    _add(group, "--residual", "model.residual", action="store_true",
         help="comparator output = max-pooled frame similarity + a learned correction starting at zero")

    group = parser.add_argument_group("teacher")
    _add(group, "--teacher", "teacher.name", choices=("efficientnet_lite2", "dino_vits16", "none"),
         help="frozen teacher for frame pseudo labels (default efficientnet_lite2)")
    _add(group, "--teacher-weights", "teacher.weights", help="teacher weights file (required for dino_vits16)")

    group = parser.add_argument_group("optimisation")
    _add(group, "--steps", "optim.steps", type=int, help="optimiser steps (default 30000)")
    _add(group, "--batch-size", "optim.batch_size", type=int, help="clips per step over all processes (default 64)")
    _add(group, "--accum-steps", "optim.accum_steps", type=int, help="gradient accumulation micro-steps (default 1)")
    _add(group, "--lr", "optim.lr", type=float, help="peak learning rate, AdamW (default 4e-5)")
    _add(group, "--weight-decay", "optim.weight_decay", type=float, help="AdamW weight decay (default 0.01)")
    _add(group, "--warmup-steps", "optim.warmup_steps", type=int, help="linear warm-up steps before the cosine (default 1000)")
    _add(group, "--min-lr-ratio", "optim.min_lr_ratio", type=float, help="final lr as a fraction of the peak (default 0)")
    _add(group, "--grad-clip", "optim.grad_clip", type=float, help="clip the gradient norm (default 0: off)")
    group.add_argument("--loss-weight", dest="loss_weights", action="append", default=[], metavar="TERM=W",
                       help="weight of a loss term: infonce, inner, ap, sshn, reg (defaults 1, 6, 4, 3, 1); repeatable")

    group = parser.add_argument_group("cached-feature mode")
    _add(group, "--cached-features", "cached.enabled", action="store_true",
         help="precompute frozen features of many augmented views per clip once (fast on CPU)")
    _add(group, "--views-per-clip", "cached.views_per_clip", type=int, help="cached views per clip, half weak, half strong (default 16)")
    _add(group, "--feature-cache-dir", "cached.cache_dir", help="feature cache folder (default OUT/feature-cache)")

    group = parser.add_argument_group("run")
    _add(group, "--seed", "run.seed", type=int, help="seed of every random choice (default 0)")
    _add(group, "--device", "run.device", choices=("auto", "cpu", "cuda"), help="default auto")
    _add(group, "--no-amp", "run.amp", action="store_false", help="full precision on GPU")
    _add(group, "--threads", "run.threads", type=int, help="CPU threads (default: torch's)")
    _add(group, "--log-every", "run.log_every", type=int, help="steps between metrics rows (default 10)")
    _add(group, "--save-every", "run.save_every", type=int, help="steps between checkpoints (default 500)")
    _add(group, "--eval-every", "run.eval_every", type=int, help="steps between evaluations (default 500)")
    _add(group, "--eval-manifest", "run.eval_manifest", help="labeled JSON manifest to evaluate on (mAP, µAP, R@1); keeps the best checkpoint")
    _add(group, "--resume", "run.resume", help="output folder (or train_state.pt) of a run to continue")
    _add(group, "--stop-after", "run.stop_after", type=int,
         help="stop with a checkpoint after this many steps of this invocation (continue with --resume)")
    _add(group, "--no-progress", "run.progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """Defaults < config file (or a resumed run's config.json) < flags."""
    from model.train.config import ConfigError, TrainConfig, load_config_file, update

    flags: dict[str, dict[str, Any]] = {}
    for dest, (key, _) in _FLAGS.items():
        if hasattr(args, dest):
            section, name = key.split(".")
            flags.setdefault(section, {})[name] = getattr(args, dest)
    if args.data is not None:
        flags.setdefault("data", {})["source"] = str(args.data)
    weights: dict[str, float] = {}
    for item in args.loss_weights:
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--loss-weight takes TERM=NUMBER, got {item!r}") from None
    if weights:
        flags["loss"] = weights

    config = TrainConfig()
    if args.config is not None:
        config = update(config, load_config_file(args.config))
    else:
        resume = flags.get("run", {}).get("resume")
        if resume:
            base = Path(resume).expanduser()
            earlier = (base if base.is_dir() else base.parent) / "config.json"
            if earlier.is_file():
                values = load_config_file(earlier)
                for key in ("resume", "stop_after"):  # about that invocation, not the run
                    values.get("run", {}).pop(key, None)
                config = update(config, values)
            flags.setdefault("run", {}).setdefault("out", str(base if base.is_dir() else base.parent))
    return update(config, flags)


def command_line(args: argparse.Namespace) -> list[str]:
    """The command as given (for the checkpoint's provenance), rebuilt from the parsed flags."""
    words = ["hapvr", "train"]
    if args.data is not None:
        words.append(str(args.data))
    if args.config is not None:
        words += ["--config", str(args.config)]
    for dest, (_, flag) in _FLAGS.items():
        if hasattr(args, dest):
            value = getattr(args, dest)
            words += [flag] if isinstance(value, bool) else [flag, str(value)]
    for item in args.loss_weights:
        words += ["--loss-weight", item]
    return words


def run(args: argparse.Namespace) -> int:
    import logging

    from model.checkpoint import CheckpointError
    from model.encoders.registry import WeightsNotFoundError
    from model.train.config import ConfigError
    from model.train.data import DataError
    from model.train.teacher import TeacherError

    import os

    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = build_config(args)
        from model.train.loop import train

        result = train(config, command_line(args))
    except (ConfigError, DataError, TeacherError, CheckpointError, WeightsNotFoundError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"hapvr train: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hapvr train: interrupted; continue with --resume", file=sys.stderr)
        return 130
    if not main_process:
        return 0
    print(f"trained to step {result.step}: {result.last_checkpoint}")
    if result.best_checkpoint is not None:
        print(f"best by evaluation mAP: {result.best_checkpoint}")
    return 0
