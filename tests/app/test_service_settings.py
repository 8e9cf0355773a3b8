"""Settings: one object, HAPVR_ environment variables, flags over them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.commands.serve import overrides, register
from indexer.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.data_dir == tmp_path / "data"
    assert settings.catalog_url == f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite3'}"
    assert settings.fps == 1.0 and settings.workers >= 1


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HAPVR_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HAPVR_PORT", "9123")
    monkeypatch.setenv("HAPVR_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("HAPVR_DATABASE_URL", "sqlite:////tmp/x.db")
    settings = Settings()
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.port == 9123
    assert settings.max_upload_bytes == 1000
    assert settings.catalog_url == "sqlite:////tmp/x.db"


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HAPVR_PORT", "9123")
    monkeypatch.setenv("HAPVR_HOST", "0.0.0.0")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--port", "9999", "--data-dir", str(tmp_path)])
    settings = Settings(**overrides(args, ("host", "port", "data_dir", "workers", "checkpoint")))
    assert settings.port == 9999
    assert settings.host == "0.0.0.0"  # not given as a flag: the environment stands
    assert settings.data_dir == tmp_path


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(port=70000)
    with pytest.raises(ValidationError):
        Settings(max_upload_bytes=0)
    with pytest.raises(ValidationError):
        Settings(unknown_option=1)  # typos do not pass silently
