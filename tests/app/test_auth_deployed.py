"""API keys in the deployed mode: PostgreSQL catalog and Redis rate-limit counts shared by API
replicas (real servers at 127.0.0.1:5432 and :6379; skipped only when they cannot be reached)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.apptools import AppClient, light_components, wait_until
from tests.app.authtools import bearer
from tests.app.test_deployed_mode import REDIS_URL, Deployment, _servers_down

pytestmark = pytest.mark.skipif(bool(_servers_down()), reason=_servers_down() or "")

ADMIN_KEY = "9c41d0e2b7a85f36" * 4  # 64 hex characters, as `openssl rand -hex 32` gives


@pytest.fixture
def deployment(tmp_path: Path, model_cache: Path) -> Iterator[Deployment]:
    made = Deployment(tmp_path, model_cache)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def replica(deployment: Deployment) -> Iterator[Callable[..., AppClient]]:
    """Start API replicas of the deployment with its default auth (required); stopped at the end."""
    started: list[AppClient] = []

    def start(**overrides: Any) -> AppClient:
        settings = deployment.settings(**{"auth": None, **overrides})
        assert settings.auth_required
        client = TestClient(create_app(settings, light_components), raise_server_exceptions=False)
        client.__enter__()
        service = AppClient(client)
        started.append(service)
        assert service.backend.wait_ready(60), service.backend.startup_error
        return service

    yield start
    for service in reversed(started):
        service.stop()


def stored_key_rows(deployment: Deployment) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(deployment.database_url.replace("+psycopg", "")) as connection:
        return list(connection.execute("SELECT * FROM api_keys ORDER BY id"))


def test_replicas_starting_together_make_one_admin_key(deployment: Deployment, replica, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="hapvr.auth"), ThreadPoolExecutor(3) as pool:
        services = list(pool.map(lambda _: replica(), range(3)))
    logged = re.findall(r"store it now: (\S+)", caplog.text)
    assert len(logged) == 1 and len(stored_key_rows(deployment)) == 1
    for service in services:
        assert service.client.get("/videos").status_code == 401
        assert service.client.get("/keys", headers=bearer(logged[0])).json()["count"] == 1


def test_keys_on_postgresql_are_hashed_shared_and_revocable(deployment: Deployment, replica) -> None:  # type: ignore[no-untyped-def]
    first, second = replica(admin_key=ADMIN_KEY), replica(admin_key=ADMIN_KEY)
    admin = bearer(ADMIN_KEY)
    created = first.client.post("/keys", json={"scope": "read", "name": "dashboard"}, headers=admin)
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    assert second.client.get("/videos", headers=bearer(key)).status_code == 200  # made on one replica, used on another
    assert second.client.post("/keys", json={"scope": "read", "name": "nul\x00byte"}, headers=admin).status_code == 422

    rows = stored_key_rows(deployment)
    assert [(row[4], row[3]) for row in rows] == [("HAPVR_ADMIN_KEY", "admin"), ("dashboard", "read")]
    stored = repr(rows)
    for secret in (key, key.split("_", 2)[2], ADMIN_KEY):
        assert secret not in stored
    assert all(row[2].startswith("$argon2id$") for row in rows)

    assert first.client.delete(f"/keys/{key_id}", headers=admin).status_code == 204
    assert second.client.get("/videos", headers=bearer(key)).status_code == 401  # the other replica refuses at once


def test_rate_limits_are_counted_in_redis_across_replicas(deployment: Deployment, replica) -> None:  # type: ignore[no-untyped-def]
    import redis

    window = 3
    limits = {"admin_key": ADMIN_KEY, "rate_limit_read": f"4/{window} seconds"}
    first, second = replica(**limits), replica(**limits)
    key = first.client.post("/keys", json={"scope": "read"}, headers=bearer(ADMIN_KEY)).json()["key"]
    for service in (first, second, first, second):
        assert service.client.get("/videos", headers=bearer(key)).status_code == 200
    limited = second.client.get("/videos", headers=bearer(key))
    assert limited.status_code == 429
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= window
    assert list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{deployment.prefix}:limits*"))
    time.sleep(retry_after)
    wait_until(lambda: first.client.get("/videos", headers=bearer(key)).status_code == 200, timeout=window * 3)
