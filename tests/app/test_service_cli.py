"""The service's commands fail fast and clearly on a bad start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main


def test_serve_refuses_a_missing_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    code = main(["serve", "--data-dir", str(tmp_path), "--checkpoint", str(tmp_path / "nope.safetensors")])
    assert code == 2
    assert "checkpoint not found" in caplog.text


def test_worker_refuses_a_data_dir_in_use(service_factory, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    service = service_factory()
    code = main(["worker", "--burst", "--data-dir", str(service.backend.settings.data_dir)])
    assert code == 2
    assert "in use by pid" in caplog.text


def _head_revision() -> str:
    """The newest migration in indexer/migrations/versions (the one `migrate` must reach)."""
    from alembic.script import ScriptDirectory

    from indexer.db import MIGRATIONS_DIR

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def test_migrate_creates_the_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    assert main(["migrate", "--database-url", f"sqlite:///{tmp_path / 'catalog.sqlite3'}"]) == 0  # idempotent
    assert capsys.readouterr().out.splitlines() == [f"catalog at revision {_head_revision()}"] * 2
    assert (tmp_path / "catalog.sqlite3").is_file()


def test_worker_burst_never_loads_the_web_framework(tmp_path: Path, model_cache: Path) -> None:
    """`hapvr worker` indexes with the real model and never imports fastapi or starlette."""
    data_dir = tmp_path / "data"
    assert main(["migrate", "--data-dir", str(data_dir)]) == 0
    script = (
        "import sys\n"
        "from app.cli import main\n"
        f"code = main(['worker', '--burst', '--data-dir', {str(data_dir)!r}])\n"
        "web = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette'))\n"
        "print('web modules:', web)\n"
        "sys.exit(code or (3 if web else 0))\n"
    )
    env = {**os.environ, "HAPVR_CACHE_DIR": str(model_cache)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web modules: []" in result.stdout
