"""Fixtures of the service tests; the helpers they use live in apptools.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from indexer.settings import Settings
from tests.app.apptools import AppClient, Media, light_components


@pytest.fixture
def media(tmp_path: Path) -> Media:
    folder = tmp_path / "media"
    folder.mkdir()
    return Media(folder)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export of the encoder for the whole session, not one per data directory."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def vector_index() -> str:
    """The frame index backend of the services a test starts; a module runs its tests on both
    with `pytestmark = pytest.mark.parametrize("vector_index", ["faiss", "milvus"])`."""
    return "faiss"


@pytest.fixture
def settings_factory(tmp_path: Path, model_cache: Path, vector_index: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "workers": 1,
            "cache_dir": model_cache,
            "vector_index": vector_index,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def service_factory(settings_factory) -> Iterator[Callable[..., AppClient]]:  # type: ignore[no-untyped-def]
    """Start apps on demand (light components unless a factory is given); stops them at the end."""
    opened: list[AppClient] = []

    def start(settings: Settings | None = None, factory=light_components, wait: bool = True, **overrides) -> AppClient:  # type: ignore[no-untyped-def]
        app = create_app(settings or settings_factory(**overrides), factory)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        service = AppClient(client)
        opened.append(service)
        if wait:
            assert service.backend.wait_ready(60), service.backend.startup_error
        return service

    yield start
    for service in reversed(opened):
        service.stop()


@pytest.fixture
def service(service_factory) -> AppClient:  # type: ignore[no-untyped-def]
    return service_factory()
