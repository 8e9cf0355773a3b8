"""`hapvr train`: self-supervised training of the similarity network on unlabeled videos.

    hapvr train VIDEOS --out runs/x [--config train.yaml] [flags]
    hapvr train --resume runs/x [--steps N]          # continue a run (its config.json is the base)
    torchrun --nproc_per_node 2 -m app.cli train VIDEOS --out runs/x   # one process per GPU

Settings come from the defaults, then the config file, then flags (see model.train.config).
Errors in the data or the settings end the command with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any, NamedTuple


class Flag(NamedTuple):
    """A command-line flag that sets one config key; left out, the key keeps the file's (or default) value."""

    option: str  # "--steps"
    key: str  # "optim.steps"
    help: str
    type: type | None = None  # int / float; None: text, or a true/false setting with an action
    action: str | None = None  # "store_true" / "store_false" for true/false settings
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.key.replace(".", "__")


# (argument group, its flags), in the order `hapvr train --help` lists them. A constant, built
# once: the CLI registers every command at start-up, before torch is imported, so this table
# does not read the config models; tests/model/test_train.py checks that it agrees with them.
FLAG_GROUPS: tuple[tuple[str, tuple[Flag, ...]], ...] = (
    (
        "data",
        (
            Flag("--out", "run.out", "output folder: checkpoints, config, metrics"),
            Flag("--cache-dir", "data.cache_dir", "frame cache folder (default OUT/cache)"),
            Flag("--fps", "data.fps", "frames per second sampled (default 1)", float),
            Flag("--clip-frames", "data.clip_frames", "frames per training view (default 32)", int),
            Flag(
                "--segment-seconds",
                "data.segment_seconds",
                "long videos are cut into clips this long (default 60)",
                float,
            ),
            Flag("--min-clip-frames", "data.min_clip_frames", "drop clips shorter than this (default 4)", int),
        ),
    ),
    (
        "model",
        (
            Flag(
                "--init",
                "model.init",
                "checkpoint whose backbone and PCA to use (e.g. from `hapvr fit-pca`); default: fit PCA on the data",
            ),
            Flag(
                "--backbone",
                "model.backbone",
                "frame encoder backbone when fitting PCA here (default efficientnet_lite0)",
            ),
            Flag("--backbone-weights", "model.backbone_weights", "weights file for backbones no package ships"),
            Flag("--pca-dim", "model.pca_dim", "region feature size after PCA (default 512)", int),
            Flag("--pca-frames", "model.pca_frames", "frames used to fit PCA (default 4000)", int),
            Flag("--rho-v", "model.rho_v", "video-level TopK rate (default 0.03)", float),
            Flag("--symmetric", "model.symmetric", "average both comparison directions", action="store_true"),
            Flag(
                "--residual",
                "model.residual",
                "comparator output = max-pooled frame similarity + a learned correction starting at zero",
                action="store_true",
            ),
        ),
    ),
    (
        "teacher",
        (
            Flag(
                "--teacher",
                "teacher.name",
                "frozen teacher for frame pseudo labels (default efficientnet_lite2)",
                choices=("efficientnet_lite2", "dino_vits16", "none"),
            ),
            Flag("--teacher-weights", "teacher.weights", "teacher weights file (required for dino_vits16)"),
        ),
    ),
    (
        "optimisation",
        (
            Flag("--steps", "optim.steps", "optimiser steps (default 30000)", int),
            Flag("--batch-size", "optim.batch_size", "clips per step over all processes (default 64)", int),
            Flag("--accum-steps", "optim.accum_steps", "gradient accumulation micro-steps (default 1)", int),
            Flag("--lr", "optim.lr", "peak learning rate, AdamW (default 4e-5)", float),
            Flag("--weight-decay", "optim.weight_decay", "AdamW weight decay (default 0.01)", float),
            Flag("--warmup-steps", "optim.warmup_steps", "linear warm-up steps before the cosine (default 1000)", int),
            Flag("--min-lr-ratio", "optim.min_lr_ratio", "final lr as a fraction of the peak (default 0)", float),
            Flag("--grad-clip", "optim.grad_clip", "clip the gradient norm (default 0: off)", float),
        ),
    ),
    (
        "cached-feature mode",
        (
            Flag(
                "--cached-features",
                "cached.enabled",
                "precompute frozen features of many augmented views per clip once (the default on a CPU; cached.enabled: false in a --config file trains online)",
                action="store_true",
            ),
            Flag(
                "--views-per-clip",
                "cached.views_per_clip",
                "cached views per clip, half weak, half strong (default 16)",
                int,
            ),
            Flag("--feature-cache-dir", "cached.cache_dir", "feature cache folder (default OUT/feature-cache)"),
        ),
    ),
    (
        "run",
        (
            Flag("--seed", "run.seed", "seed of every random choice (default 0)", int),
            Flag("--device", "run.device", "default auto", choices=("auto", "cpu", "cuda")),
            Flag("--no-amp", "run.amp", "full precision on GPU", action="store_false"),
            Flag("--threads", "run.threads", "CPU threads (default: torch's)", int),
            Flag("--log-every", "run.log_every", "steps between metrics rows (default 10)", int),
            Flag("--save-every", "run.save_every", "steps between checkpoints (default 500)", int),
            Flag("--save-minutes", "run.save_minutes", "minutes between checkpoints (default 5)", float),
            Flag(
                "--max-minutes",
                "run.max_minutes",
                "time budget of the run in minutes; the schedule is fitted to it (default 20 on a CPU, none on a GPU; 0: none)",
                float,
            ),
            Flag("--eval-every", "run.eval_every", "steps between evaluations (default 500)", int),
            Flag(
                "--eval-manifest",
                "run.eval_manifest",
                "labeled JSON manifest to evaluate on (mAP, µAP, R@1); keeps the best checkpoint",
            ),
            Flag("--resume", "run.resume", "output folder (or train_state.pt) of a run to continue"),
            Flag(
                "--stop-after",
                "run.stop_after",
                "stop with a checkpoint after this many steps of this invocation (continue with --resume)",
                int,
            ),
            Flag("--no-progress", "run.progress", "no progress bar", action="store_false"),
        ),
    ),
)
FLAGS: tuple[Flag, ...] = tuple(flag for _, flags in FLAG_GROUPS for flag in flags)
LOSS_WEIGHT_HELP = "weight of a loss term: infonce, inner, ap, sshn, reg (defaults 1, 6, 4, 3, 1); repeatable"


def _add(group: argparse._ArgumentGroup, flag: Flag) -> None:
    kwargs: dict[str, Any] = {"help": flag.help}
    if flag.action is not None:
        kwargs["action"] = flag.action
    elif flag.choices is not None:
        kwargs["choices"] = flag.choices
    else:
        kwargs["metavar"] = flag.option.lstrip("-").split("-")[-1].upper()
        if flag.type is not None:
            kwargs["type"] = flag.type
    group.add_argument(flag.option, dest=flag.dest, default=argparse.SUPPRESS, **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the similarity network on unlabeled videos (self-supervised)",
        description="Self-supervised HAP-VR training on a folder or manifest of unlabeled videos.",
    )
    parser.add_argument(
        "data", nargs="?", default=None, help="folder of videos (searched recursively) or a manifest file"
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML or JSON file of settings (flags override it)")
    for title, flags in FLAG_GROUPS:
        group = parser.add_argument_group(title)
        for flag in flags:
            _add(group, flag)
        if title == "optimisation":
            group.add_argument(
                "--loss-weight",
                dest="loss_weights",
                action="append",
                default=[],
                metavar="TERM=W",
                help=LOSS_WEIGHT_HELP,
            )
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """Defaults < config file (or a resumed run's config.json) < flags."""
    from model.train.config import ConfigError, TrainConfig, load_config_file, update

    flags: dict[str, dict[str, Any]] = {}
    for flag in FLAGS:
        if hasattr(args, flag.dest):
            section, name = flag.key.split(".")
            flags.setdefault(section, {})[name] = getattr(args, flag.dest)
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
        config = update(config, load_config_file(args.config), where=str(args.config))
    else:
        resume = flags.get("run", {}).get("resume")
        if resume:
            base = Path(resume).expanduser()
            earlier = (base if base.is_dir() else base.parent) / "config.json"
            if earlier.is_file():
                values = load_config_file(earlier)
                for key in ("resume", "stop_after"):  # about that invocation, not the run
                    values.get("run", {}).pop(key, None)
                config = update(config, values, where=str(earlier))
            flags.setdefault("run", {}).setdefault("out", str(base if base.is_dir() else base.parent))
    return update(config, flags)


def command_line(args: argparse.Namespace) -> list[str]:
    """The command as given (for the checkpoint's provenance), rebuilt from the parsed flags."""
    words = ["hapvr", "train"]
    if args.data is not None:
        words.append(str(args.data))
    if args.config is not None:
        words += ["--config", str(args.config)]
    for flag in FLAGS:
        if hasattr(args, flag.dest):
            value = getattr(args, flag.dest)
            words += [flag.option] if isinstance(value, bool) else [flag.option, str(value)]
    for item in args.loss_weights:
        words += ["--loss-weight", item]
    return words


def run(args: argparse.Namespace) -> int:
    import logging

    from pydantic import ValidationError

    from model.checkpoint import CheckpointError
    from model.encoders.registry import WeightsNotFoundError
    from model.settings import ModelSettings
    from model.train.config import ConfigError, describe_error
    from model.train.data import DataError
    from model.train.distributed import DistributedEnv
    from model.train.teacher import TeacherError

    try:
        env = DistributedEnv()
        cache_dir = ModelSettings().model_cache_dir
    except ValidationError as error:
        print(f"hapvr train: error: environment: {describe_error(error)}", file=sys.stderr)
        return 2
    main_process = env.main  # under torchrun only rank 0 reports
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr
    )
    # SIGTERM (a container stopped, a job scheduler's limit) stops like Ctrl-C: with a checkpoint.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        config = build_config(args)
        from model.train.loop import train

        result = train(config, command_line(args), cache_dir=cache_dir, env=env)
    except (ConfigError, DataError, TeacherError, CheckpointError, WeightsNotFoundError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"hapvr train: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the first step: nothing to keep yet
        print("hapvr train: interrupted before training began", file=sys.stderr)
        return 130
    if not main_process:
        return 130 if result.interrupted else 0
    if result.interrupted:
        saved = f"checkpoint {result.last_checkpoint}" if result.last_checkpoint.is_file() else "no checkpoint yet"
        print(f"hapvr train: interrupted at step {result.step}; {saved}; continue with --resume {config.run.out}")
        return 130
    print(f"trained to step {result.step} of {result.schedule_steps}: {result.last_checkpoint}")
    if result.best_checkpoint is not None:
        print(f"best by evaluation mAP: {result.best_checkpoint}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
