"""Fixtures shared by the indexer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


# Here, not in a test module: a session fixture imported into a second module becomes a second
# session fixture there, which would start a second server on the same port while the first runs.
@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a real Milvus standalone server (tests/milvus_server.py), for the slow runs."""
    from tests.milvus_server import EmbeddedMilvus, MilvusUnavailable

    server = EmbeddedMilvus(tmp_path_factory.mktemp("milvus-server"))
    try:
        server.start()
    except MilvusUnavailable as error:
        pytest.fail(str(error))
    yield server.uri
    server.stop()
