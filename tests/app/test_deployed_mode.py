"""The deployed mode against real PostgreSQL and Redis servers (127.0.0.1:5432 and :6379).

The API runs in the test process (deployed settings, light components); indexer workers are
real `rq` worker processes (deployed_worker.py). Each test gets its own database and Redis key
prefix and removes them afterwards. Skipped only when the servers cannot be reached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.main import create_app
from indexer.redis_queue import lease_key, queue_name
from indexer.settings import Settings
from tests.app.apptools import AppClient, Media, light_components, wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKER_MODULE = "tests.app.deployed_worker"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def _servers_down() -> str | None:
    try:
        import psycopg
        import redis

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            pass
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as error:  # noqa: BLE001 - any reason to skip is reported
        return f"PostgreSQL at 127.0.0.1:5432 or Redis at 127.0.0.1:6379 unreachable: {type(error).__name__}: {error}"
    return None


# Several worker processes, PostgreSQL and Redis per test: a long run (`make test-slow`).
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_servers_down()), reason=_servers_down() or "")]


class Deployment:
    """One test's database, Redis prefix, data directory and worker processes."""

    def __init__(self, root: Path, cache: Path) -> None:
        import psycopg

        self.name = f"hapvr_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.name}"')
        self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"
        self.data_dir = root / "data"
        self.cache = cache
        self.root = root
        self.workers: list[subprocess.Popen[bytes]] = []
        self.index_settings: dict[str, str] = {}  # the frame index of API replicas and workers alike

    @property
    def prefix(self) -> str:
        return self.name

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            **self.index_settings,
            "data_dir": self.data_dir,
            "cache_dir": self.cache,
            "database_url": self.database_url,
            "redis_url": REDIS_URL,
            "redis_prefix": self.prefix,
            "workers": 0,
            "auth": "off",  # keys are required by default when deployed; tests/app/test_auth*.py cover them
        }
        values.update(overrides)
        return Settings(**values)

    def environment(self, delay: float) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("HAPVR_") and k not in ("DATABASE_URL", "REDIS_URL")
        }
        env.update(
            HAPVR_DATA_DIR=str(self.data_dir),
            HAPVR_CACHE_DIR=str(self.cache),
            HAPVR_DATABASE_URL=self.database_url,
            HAPVR_REDIS_URL=REDIS_URL,
            HAPVR_REDIS_PREFIX=self.prefix,
            HAPVR_TEST_EMBED_DELAY_S=str(delay),
            PYTHONPATH=str(ROOT),
        )
        env.update({f"HAPVR_{name.upper()}": value for name, value in self.index_settings.items()})
        return env

    def start_worker(self, *, delay: float = 0.0, burst: bool = False) -> subprocess.Popen[bytes]:
        log = open(self.root / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115 - closed with the process
        command = [sys.executable, "-m", WORKER_MODULE, *(["--burst"] if burst else [])]
        process = subprocess.Popen(command, cwd=ROOT, env=self.environment(delay), stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.workers.clear()

    def cleanup(self) -> None:
        import psycopg
        import redis

        self.stop_workers()
        try:
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(f"*{self.prefix}*", count=1000):
                client.delete(key)
        except redis.RedisError:
            pass
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture
def deployment(tmp_path: Path, model_cache: Path) -> Iterator[Deployment]:
    made = Deployment(tmp_path, model_cache)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def api(deployment: Deployment) -> Iterator[Callable[[], AppClient]]:
    """Start API replicas on the deployment (light components); all stopped at the end."""
    from fastapi.testclient import TestClient

    started: list[AppClient] = []

    def start() -> AppClient:
        client = TestClient(create_app(deployment.settings(), light_components), raise_server_exceptions=False)
        client.__enter__()
        service = AppClient(client)
        started.append(service)
        assert service.backend.wait_ready(60), service.backend.startup_error
        return service

    yield start
    for service in reversed(started):
        if service.backend.ready:
            service.stop()


def upload_id(service: AppClient, path: Path) -> int:
    response = service.upload(path)
    assert response.status_code in (200, 202), response.text
    return int(response.json()["id"])


def assert_index_agrees(service: AppClient) -> None:
    """The replica's index holds exactly the ready videos, each with its frames once."""
    from indexer import catalog
    from indexer.db import session_scope

    backend = service.backend
    with session_scope(backend.sessions) as session:
        ready = catalog.ids_with_status(catalog.READY, session=session)
        rows = catalog.videos_by_ids(ready, session=session)
    library = backend.library
    wait_until(lambda: {int(v) for v in library._index.video_ids()} == ready, timeout=30)
    assert library.size() == (len(ready), sum(row.frames_indexed or 0 for row in rows.values()))
    assert set(library.store.ids()) >= ready


def test_worker_killed_mid_job(deployment: Deployment, api, media: Media) -> None:  # type: ignore[no-untyped-def]
    import redis
    from rq import Queue, SimpleWorker
    from rq.registry import StartedJobRegistry

    service = api()
    # The embed waits 10 s, so the kill lands mid-job even when a loaded box polls late.
    deployment.start_worker(delay=10.0)
    deployment.start_worker(delay=10.0)
    video_id = upload_id(service, media.video("killed.mp4", seed=11, seconds=6))
    client = redis.Redis.from_url(REDIS_URL)
    key = lease_key(deployment.prefix, video_id)
    wait_until(lambda: client.get(key) is not None, timeout=30)
    holder = int(client.get(key).decode().split(":")[1])
    assert holder in {p.pid for p in deployment.workers}
    os.kill(holder, signal.SIGKILL)
    # The row was claimed before the lease appeared, so the kill always leaves it `processing`
    # without a lease: the surviving worker's reaper queues it again (about 20 s), or the
    # stale-queued scan (STALE_QUEUED_S) should that re-enqueue race the dead worker's job record.
    state = service.wait_done(video_id, timeout=120)
    assert state["status"] == "ready", state
    from indexer import catalog
    from indexer.db import session_scope

    with session_scope(service.backend.sessions) as session:
        row = catalog.get_video(video_id, session=session)
        assert row is not None and row.attempts == 2  # the killed run, then the one that finished
        assert row.interruptions == 1  # ... and the killed one is not held against the video
    survivor = next(p for p in deployment.workers if p.pid != holder)
    assert survivor.poll() is None
    assert_index_agrees(service)
    # rq alone would list the dead worker, busy with its job, for the job timeout (two hours).
    queue = Queue(queue_name(deployment.prefix), connection=client)
    wait_until(lambda: holder not in {worker.pid for worker in SimpleWorker.all(queue=queue)}, timeout=60)
    assert [worker.pid for worker in SimpleWorker.all(queue=queue)] == [survivor.pid]
    assert StartedJobRegistry(queue=queue).get_job_ids() == []


def search_ids(service: AppClient, video_id: int) -> list[tuple[int, float]]:
    response = service.client.get("/search", params={"video_id": video_id, "k": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    hits = body.get("results", body.get("data", body.get("hits")))
    return [(hit["video_id"], round(hit["score"], 4)) for hit in hits]


def test_redis_restart_loses_no_job(deployment: Deployment, api, media: Media) -> None:  # type: ignore[no-untyped-def]
    import redis

    service = api()
    original = upload_id(service, media.video("orig.mp4", seed=21))
    copy = upload_id(service, media.reencoded("copy.mp4", seed=21))
    other = upload_id(service, media.video("other.mp4", seed=22))
    assert deployment.start_worker(burst=True).wait(60) == 0
    for video_id in (original, copy, other):
        assert service.wait_done(video_id)["status"] == "ready"
    assert_index_agrees(service)
    before = search_ids(service, original)
    assert before and before[0][0] == copy

    # Jobs accepted while no worker runs live only in Redis and the catalog; Redis loses them.
    pending = [upload_id(service, media.video(f"pending{seed}.mp4", seed=seed)) for seed in (31, 32)]
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=30)
    subprocess.run(REDIS_START, check=True, timeout=30)
    wait_until(lambda: _ping(redis.Redis.from_url(REDIS_URL)), timeout=30)
    service.stop()

    service = api()
    assert deployment.start_worker(burst=True).wait(60) == 0
    for video_id in pending:
        assert service.wait_done(video_id)["status"] == "ready"
    assert_index_agrees(service)
    after = [hit for hit in search_ids(service, original) if hit[0] not in pending]
    assert after == before


def _ping(client) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False


def test_twenty_parallel_uploads(deployment: Deployment, api, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = api()
    deployment.start_worker()
    deployment.start_worker()
    paths = [media.video(f"parallel{n}.mp4", seed=100 + n, seconds=2) for n in range(20)]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda path: upload_id(service, path), paths))
    assert len(set(ids)) == 20
    for video_id in ids:
        assert service.wait_done(video_id, timeout=90)["status"] == "ready"
    assert_index_agrees(service)

    # Re-indexed by a worker: the replica takes the new features (an event), and agrees again.
    applied = service.backend.index_sync.events_applied
    assert service.client.post(f"/videos/{ids[0]}/reindex").status_code == 202
    again = service.wait_done(ids[0], timeout=90)
    assert (again["status"], again["attempts"]) == ("ready", 1)
    wait_until(lambda: service.backend.index_sync.events_applied > applied, timeout=30)
    assert_index_agrees(service)


def test_milvus_replicas_share_one_index_without_events(
    deployment: Deployment, api, media: Media, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """With HAPVR_VECTOR_INDEX=milvus the worker writes the collection and every replica searches
    it: no replica holds an index of its own or follows index events, and a delete through one
    replica is gone for the other at once."""
    from tests.app.milvus_lite_server import MilvusServer

    server = MilvusServer(tmp_path / "milvus-server")
    server.start()
    try:
        deployment.index_settings = {"vector_index": "milvus", "milvus_uri": server.uri}
        first, second = api(), api()
        assert first.backend.index_sync is None and second.backend.index_sync is None
        deployment.start_worker()
        original = upload_id(first, media.video("a.mp4", seed=1))
        copy = upload_id(first, media.reencoded("a_copy.avi", seed=1))
        other = upload_id(second, media.video("b.mp4", seed=2))
        for video_id in (original, copy, other):
            assert second.wait_done(video_id)["status"] == "ready"
        found = second.client.get("/search", params={"video_id": original})
        assert found.status_code == 200 and found.json()["data"][0]["video_id"] == copy
        assert first.backend.library.size() == second.backend.library.size()

        assert second.client.delete(f"/videos/{copy}").status_code == 204
        after = first.client.get("/search", params={"video_id": original})  # at once: no event to wait for
        assert after.status_code == 200 and copy not in [hit["video_id"] for hit in after.json()["data"]]
        assert {int(v) for v in first.backend.library._index.video_ids()} == {original, other}
    finally:
        deployment.stop_workers()
        server.stop()
