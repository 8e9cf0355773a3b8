"""The model knobs every `hapvr` command shares, read from HAPVR_* environment variables.

`ModelSettings` is the base of the service's Settings (indexer.settings), and the model's own
command-line tools (`hapvr train`, `hapvr fit-pca`) read it directly, so one variable means
the same thing everywhere. Nothing else in model/ reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "HAPVR_"
# The variable of the derived-model-files directory (tools that start processes pass it on).
CACHE_ENV = f"{ENV_PREFIX}CACHE_DIR"


def default_cache_dir() -> Path:
    """~/.cache/hapvr-search: where exports go when no cache directory is configured."""
    return Path.home() / ".cache" / "hapvr-search"


class ModelSettings(BaseSettings):
    """Checkpoint, sampling rate, encoder runtime and the cache of derived model files."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    checkpoint: Path | None = Field(
        None, description="model checkpoint; default: the shipped one, else the training-free model"
    )
    fps: float = Field(1.0, gt=0, description="frames sampled per second of video")
    runtime: Literal["auto", "onnxruntime", "torch"] = Field("auto", description="frame encoder runtime")
    cache_dir: Path | None = Field(None, description="derived model files (the encoder's ONNX export)")

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def model_cache_dir(self) -> Path:
        """Where the encoder's ONNX export is cached: cache_dir, else ~/.cache/hapvr-search."""
        return self.cache_dir.expanduser() if self.cache_dir is not None else default_cache_dir()
