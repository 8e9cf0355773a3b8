"""A checkpoint's provenance never records an absolute path of the training machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from model.provenance import portable_path, portable_words


def test_path_under_the_working_folder_stays_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert portable_path(tmp_path / "runs" / "train") == str(Path("runs") / "train")
    assert portable_path("runs/train") == "runs/train"


def test_path_elsewhere_keeps_only_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert portable_path("/srv/secret/user/pca.safetensors") == "pca.safetensors"
    assert portable_words(["hapvr", "train", "--init", "/srv/x/init.safetensors", "--steps", "5"]) == [
        "hapvr",
        "train",
        "--init",
        "init.safetensors",
        "--steps",
        "5",
    ]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value, *value.split()]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_shipped_checkpoint_records_no_absolute_path() -> None:
    provenance = load_checkpoint(DEFAULT_CHECKPOINT).provenance
    absolute = [s for s in _strings(provenance) if s.startswith(("/", "~"))]
    assert provenance and absolute == []
