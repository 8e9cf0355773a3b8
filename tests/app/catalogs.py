"""Settings for an app on either catalog: SQLite in its data directory (embedded) or a fresh
PostgreSQL database with its own Redis prefix (deployed), removed again afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
CATALOGS = ("sqlite", "postgresql")


def postgres_down() -> str | None:
    """Why the deployed mode cannot run here (PostgreSQL or Redis unreachable), or None."""
    try:
        import psycopg
        import redis

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            pass
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as error:  # noqa: BLE001 - any reason to skip is reported
        return f"PostgreSQL at 127.0.0.1:5432 or Redis at 127.0.0.1:6379 unreachable: {type(error).__name__}: {error}"
    return None


@contextmanager
def catalog_settings(kind: str) -> Iterator[dict[str, object]]:
    """Settings values selecting the catalog `kind` (nothing for SQLite, the default)."""
    if kind == "sqlite":
        yield {}
        return
    import psycopg
    import redis

    name = f"hapvr_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "database_url": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            "redis_url": REDIS_URL,
            "redis_prefix": name,
            # A deployment requires API keys; these tests are about the catalog, the key tests
            # (tests/app/test_auth*.py) cover the deployed mode with keys on.
            "auth": "off",
        }
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{name}*", count=1000):
            client.delete(key)
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
