"""The trainer's settings: one dataclass per concern, an optional YAML/JSON file, CLI overrides.

Precedence: defaults < config file < command-line flags. The resolved config is written next
to the checkpoint (config.json, which YAML readers also read), so a run can be repeated from
its output folder alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.losses.total import LossConfig, LossWeights
from model.train.augment import AugmentConfig


class ConfigError(ValueError):
    """A config file or value the trainer cannot use; the message is one line for the user."""


@dataclass
class DataConfig:
    source: str = ""  # a folder of videos or a manifest file listing them
    cache_dir: str = ""  # frame cache; empty -> <out>/cache
    fps: float = 1.0
    short_side: int = 256
    clip_frames: int = 32  # frames per view (published: 28-32 at 1 fps)
    segment_seconds: float = 60.0  # long videos are cut into clips of this length, each its own identity
    min_clip_frames: int = 4  # shorter clips are dropped
    max_video_frames: int = 7200  # decode limit per video


@dataclass
class ModelConfig:
    init: str = ""  # checkpoint (e.g. from `hapvr fit-pca`) whose backbone + PCA to train on; empty -> fit PCA here
    backbone: str = "efficientnet_lite0"
    backbone_weights: str = ""
    pca_dim: int = 512
    pca_frames: int = 4000  # frames sampled from the training data to fit PCA when there is no init
    crop: int = 224
    rho_f: float = 0.1
    rho_v: float = 0.03
    symmetric: bool = False
    residual: bool = False  # comparator as a correction of the max-pooled Chamfer prior (SimilarityConfig.residual)


@dataclass
class TeacherConfig:
    name: str = "efficientnet_lite2"  # efficientnet_lite2 | dino_vits16 | none
    weights: str = ""


@dataclass
class OptimConfig:
    steps: int = 30000  # optimiser steps (after gradient accumulation)
    batch_size: int = 64  # clips per optimiser step, over all processes and accumulation steps
    accum_steps: int = 1
    lr: float = 4e-5
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.0  # cosine ends at lr * this
    grad_clip: float = 0.0  # 0 = off


@dataclass
class CacheModeConfig:
    enabled: bool = False  # train from cached backbone features of pre-augmented views
    views_per_clip: int = 16  # half weak, half strong
    cache_dir: str = ""  # empty -> <out>/feature-cache


@dataclass
class RunConfig:
    out: str = ""
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision on CUDA (bf16 where supported); ignored on CPU
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    log_every: int = 10
    save_every: int = 500
    eval_every: int = 500
    eval_manifest: str = ""
    resume: str = ""
    stop_after: int = 0  # stop (with a checkpoint) after this many steps of this invocation; 0 = run to the end
    progress: bool = True


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    loss_params: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cached: CacheModeConfig = field(default_factory=CacheModeConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from nested dicts; unknown sections or keys are errors, not silently ignored."""
        config = cls()
        return update(config, values)

    def validate(self) -> None:
        checks = [
            (self.data.fps > 0, "data.fps must be positive"),
            (self.data.clip_frames >= 4, "data.clip_frames must be at least 4 (the comparator pools twice)"),
            (self.data.min_clip_frames >= 1, "data.min_clip_frames must be at least 1"),
            (self.data.segment_seconds > 0, "data.segment_seconds must be positive"),
            (self.optim.steps >= 1, "optim.steps must be at least 1"),
            (self.optim.batch_size >= 2, "optim.batch_size must be at least 2 clips (negatives come from the batch)"),
            (self.optim.accum_steps >= 1, "optim.accum_steps must be at least 1"),
            (self.optim.lr > 0, "optim.lr must be positive"),
            (self.optim.warmup_steps >= 0, "optim.warmup_steps must not be negative"),
            (0.0 <= self.optim.min_lr_ratio <= 1.0, "optim.min_lr_ratio must be in [0, 1]"),
            (self.cached.views_per_clip >= 2, "cached.views_per_clip must be at least 2"),
            (self.run.log_every >= 1, "run.log_every must be at least 1"),
            (self.run.device in ("auto", "cpu", "cuda"), "run.device must be auto, cpu or cuda"),
            (bool(self.run.out), "an output folder is required (--out)"),
            (bool(self.data.source), "a training data folder or manifest is required"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.optim.batch_size % self.optim.accum_steps:
            raise ConfigError(
                f"optim.batch_size ({self.optim.batch_size}) must be a multiple of optim.accum_steps ({self.optim.accum_steps})"
            )


def update(obj: Any, values: dict[str, Any], where: str = "") -> Any:
    """Return a copy of dataclass `obj` with `values` applied, recursing into nested dataclasses."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            raise ConfigError(f"unknown config key {name!r}; known: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = update(current, value, name)
        else:
            changes[key] = _coerce(current, value, name)
    return dataclasses.replace(obj, **changes)


def _coerce(current: Any, value: Any, name: str) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise ConfigError(f"{name} must be a list of {len(current)} numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(current, (int, float)) and not isinstance(value, bool):
        try:
            converted = type(current)(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if isinstance(current, int) and isinstance(value, float) and value != converted:
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return converted
    if isinstance(current, str):
        return "" if value is None else str(value)
    raise ConfigError(f"{name}: cannot set a value of type {type(value).__name__}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a .json, .yaml or .yml config into nested dicts."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use a .json config") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return values


def write_config(config: TrainConfig, path: str | Path) -> Path:
    """The resolved config as JSON (a subset of YAML, so either kind of reader takes it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=False) + "\n")
    return path
