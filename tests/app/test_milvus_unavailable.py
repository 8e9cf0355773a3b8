"""A Milvus server that goes away: searches answer 503 with a reason, and service resumes when
it returns. The server is a real Milvus gRPC endpoint (milvus-lite's `server` command) in a
process of its own, stopped and started again on the same port and data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.apptools import Media, wait_until
from tests.app.milvus_lite_server import MilvusServer


@pytest.fixture
def milvus_server(tmp_path: Path) -> Iterator[MilvusServer]:
    server = MilvusServer(tmp_path / "milvus-server")
    server.start()
    yield server
    server.stop()


def test_search_answers_503_while_milvus_is_down_and_recovers(service_factory, milvus_server, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(vector_index="milvus", milvus_uri=milvus_server.uri, milvus_timeout_s=2.0)
    first = service.ingest(media.video("a.mp4", seed=1))
    copy = service.ingest(media.reencoded("a_copy.avi", seed=1))
    assert first["status"] == copy["status"] == "ready"
    before = service.client.get("/search", params={"video_id": first["id"]})
    assert before.status_code == 200 and before.json()["data"][0]["video_id"] == copy["id"]

    milvus_server.stop()
    down = service.client.get("/search", params={"video_id": first["id"]})
    assert down.status_code == 503, down.text
    assert "vector index" in down.json()["detail"] and "unavailable" in down.json()["detail"]
    assert down.headers.get("Retry-After")
    # The catalog still answers: only what needs the index is refused.
    assert service.client.get(f"/videos/{first['id']}").status_code == 200

    milvus_server.start()
    wait_until(lambda: service.client.get("/search", params={"video_id": first["id"]}).status_code == 200, 60)
    after = service.client.get("/search", params={"video_id": first["id"]})
    assert [hit["video_id"] for hit in after.json()["data"]] == [hit["video_id"] for hit in before.json()["data"]]


def test_start_up_waits_for_milvus(service_factory, tmp_path: Path, media: Media) -> None:  # type: ignore[no-untyped-def]
    server = MilvusServer(tmp_path / "late-server")
    service = service_factory(vector_index="milvus", milvus_uri=server.uri, milvus_timeout_s=1.0, wait=False)
    try:
        wait_until(lambda: service.backend.startup_error is not None, 60)
        ready = service.client.get("/readyz")
        assert ready.status_code == 503 and "unavailable" in ready.text
        server.start()
        assert service.backend.wait_ready(60), service.backend.startup_error
        assert service.ingest(media.video("a.mp4", seed=1))["status"] == "ready"
    finally:
        server.stop()
