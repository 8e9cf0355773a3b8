"""The trainer's settings: one pydantic model per concern, an optional YAML/JSON file, CLI overrides.

Precedence: defaults < config file < command-line flags. Every section forbids unknown keys, so
a typo in a file is an error rather than a silently ignored setting, and values are checked as
they are read; any problem is a `ConfigError` with a one-line message. The resolved config is
written next to the checkpoint (config.json, which YAML readers also read), so a run can be
repeated from its output folder alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError, model_validator

from model.fileio import write_text_atomic
from model.losses.total import LossConfig, LossWeights
from model.train.augment import AugmentConfig


class ConfigError(ValueError):
    """A config file or value the trainer cannot use; the message is one line for the user."""


def _text(value: Any) -> Any:
    """Paths and names: null is "", numbers and paths are written as text."""
    if value is None:
        return ""
    if isinstance(value, (int, float, Path)) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]


def _require(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


class Section(BaseModel):
    """One group of settings: unknown keys are errors (true/false settings are StrictBool: only booleans)."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(Section):
    source: Text = ""  # a folder of videos or a manifest file listing them
    cache_dir: Text = ""  # frame cache; empty -> <out>/cache
    fps: float = 1.0
    short_side: int = 256
    clip_frames: int = 32  # frames per view (published: 28-32 at 1 fps)
    segment_seconds: float = 60.0  # long videos are cut into clips of this length, each its own identity
    min_clip_frames: int = 4  # shorter clips are dropped
    max_video_frames: int = 7200  # decode limit per video

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        _require(
            [
                (self.fps > 0, "data.fps must be positive"),
                (self.clip_frames >= 4, "data.clip_frames must be at least 4 (the comparator pools twice)"),
                (self.min_clip_frames >= 1, "data.min_clip_frames must be at least 1"),
                (self.segment_seconds > 0, "data.segment_seconds must be positive"),
            ]
        )
        return self


class ModelConfig(Section):
    init: Text = ""  # checkpoint (e.g. from `hapvr fit-pca`) whose backbone + PCA to train on; empty -> fit PCA here
    backbone: Text = "efficientnet_lite0"
    backbone_weights: Text = ""
    pca_dim: int = 512
    pca_frames: int = 4000  # frames sampled from the training data to fit PCA when there is no init
    crop: int = 224
    rho_f: float = 0.1
    rho_v: float = 0.03
    symmetric: StrictBool = False
    residual: StrictBool = (
        False  # comparator as a correction of the max-pooled Chamfer prior (SimilarityConfig.residual)
    )


class TeacherConfig(Section):
    name: Literal["efficientnet_lite2", "dino_vits16", "none"] = "efficientnet_lite2"
    weights: Text = ""


class OptimConfig(Section):
    steps: int = 30000  # optimiser steps (after gradient accumulation)
    batch_size: int = 64  # clips per optimiser step, over all processes and accumulation steps
    accum_steps: int = 1
    lr: float = 4e-5
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.0  # cosine ends at lr * this
    grad_clip: float = 0.0  # 0 = off

    @model_validator(mode="after")
    def _check(self) -> OptimConfig:
        _require(
            [
                (self.steps >= 1, "optim.steps must be at least 1"),
                (self.batch_size >= 2, "optim.batch_size must be at least 2 clips (negatives come from the batch)"),
                (self.accum_steps >= 1, "optim.accum_steps must be at least 1"),
                (self.lr > 0, "optim.lr must be positive"),
                (self.warmup_steps >= 0, "optim.warmup_steps must not be negative"),
                (0.0 <= self.min_lr_ratio <= 1.0, "optim.min_lr_ratio must be in [0, 1]"),
                (
                    self.batch_size % self.accum_steps == 0,
                    f"optim.batch_size ({self.batch_size}) must be a multiple of optim.accum_steps ({self.accum_steps})",
                ),
            ]
        )
        return self


class CacheModeConfig(Section):
    # Train from cached backbone features of pre-augmented views (about a second a step on a CPU,
    # against a minute online). None: cached on a CPU, online on a GPU.
    enabled: StrictBool | None = None
    views_per_clip: int = 16  # half weak, half strong
    cache_dir: Text = ""  # empty -> <out>/feature-cache

    @model_validator(mode="after")
    def _check(self) -> CacheModeConfig:
        _require([(self.views_per_clip >= 2, "cached.views_per_clip must be at least 2")])
        return self


class RunConfig(Section):
    out: Text = ""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: StrictBool = True  # mixed precision on CUDA (bf16 where supported); ignored on CPU
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    log_every: int = 10
    save_every: int = 500
    save_minutes: float = 5.0  # also save when this many minutes passed since the last checkpoint
    # Wall-clock budget of the whole run in minutes; the schedule is fitted to what is left of it.
    # None: 20 on a CPU, none on a GPU (model.train.budget); 0: no budget.
    max_minutes: float | None = None
    eval_every: int = 500
    eval_manifest: Text = ""
    resume: Text = ""
    stop_after: int = 0  # stop (with a checkpoint) after this many steps of this invocation; 0 = run to the end
    progress: StrictBool = True

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        _require(
            [
                (self.log_every >= 1, "run.log_every must be at least 1"),
                (self.save_minutes > 0, "run.save_minutes must be positive"),
                (self.max_minutes is None or self.max_minutes >= 0, "run.max_minutes must be 0 (none) or positive"),
            ]
        )
        return self


class TrainConfig(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossWeights = Field(default_factory=LossWeights)
    loss_params: LossConfig = Field(default_factory=LossConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    cached: CacheModeConfig = Field(default_factory=CacheModeConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (tuples stay tuples), as written to config.json and train_state.pt."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, values: Any) -> TrainConfig:
        """Build from nested dicts; unknown sections or keys are errors, not silently ignored."""
        return update(cls(), values)

    def check_ready(self) -> None:
        """What a run needs beyond valid values: somewhere to write and something to read."""
        try:
            _require(
                [
                    (bool(self.run.out), "an output folder is required (--out)"),
                    (bool(self.data.source), "a training data folder or manifest is required"),
                ]
            )
        except ValueError as error:
            raise ConfigError(str(error)) from None


def update(config: TrainConfig, values: Any, where: str = "") -> TrainConfig:
    """A new config: `config` with the nested mapping `values` laid over it, then checked.

    `where` names the source of the values (a file) in error messages.
    """
    if not isinstance(values, dict):
        raise ConfigError(
            f"{where or 'config'}: the top level must be a mapping of sections, got {type(values).__name__}"
        )
    try:
        return TrainConfig.model_validate(_merge(config.model_dump(), values))
    except ValidationError as error:
        message = describe_error(error)
        raise ConfigError(f"{where}: {message}" if where else message) from None


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` laid over it, mappings merged key by key (anything else replaces)."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_error(error: ValidationError) -> str:
    """The first problem of a ValidationError as one line, naming the setting by its dotted key."""
    first = error.errors(include_url=False)[0]
    location = [str(part) for part in first["loc"]]
    name = ".".join(location)
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        known = sorted(_section(location[:-1]).model_fields)
        return f"unknown config key {name!r}; known: {', '.join(known)}{more}"
    if first["type"] == "value_error":  # a section's own check: its message names the setting
        message = str(first["ctx"]["error"]) if "ctx" in first else first["msg"]
        return " ".join(message.split()) + more
    text = " ".join(first["msg"].split())
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{name or 'config'}: {text[0].lower() + text[1:]}{shown}{more}"


def _section(path: list[str]) -> type[BaseModel]:
    model: type[BaseModel] = TrainConfig
    for part in path:
        field = model.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        model = field.annotation
    return model


def field_type(key: str) -> Any:
    """The annotation of a dotted setting, e.g. field_type("optim.steps") is int."""
    section, name = key.split(".")
    return _section([section]).model_fields[name].annotation


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
            raise ConfigError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use a .json config"
            ) from None
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
    write_text_atomic(path, json.dumps(config.to_dict(), indent=2, sort_keys=False) + "\n", mode=0o644)
    return path
