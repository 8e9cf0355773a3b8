"""/search over HTTP: ranking, exclusions, errors, search by uploaded clip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.apptools import AppClient, Media

# The same behaviour on both frame index backends (Milvus: milvus-lite in the data directory).
pytestmark = pytest.mark.parametrize("vector_index", ["faiss", "milvus"])


@pytest.fixture
def library(service: AppClient, media: Media) -> tuple[AppClient, dict[str, dict]]:
    """Three originals, a re-encoded copy of the first; all ready."""
    videos = {
        "a": service.ingest(media.video("a.mp4", seed=1), title="a"),
        "b": service.ingest(media.video("b.mp4", seed=2), title="b"),
        "c": service.ingest(media.video("c.mp4", seed=3), title="c"),
        "a_copy": service.ingest(media.reencoded("a_copy.avi", seed=1), title="a copy"),
    }
    assert all(v["status"] == "ready" for v in videos.values())
    return service, videos


def test_copy_ranks_first_and_query_is_excluded(library) -> None:  # type: ignore[no-untyped-def]
    service, videos = library
    response = service.client.get("/search", params={"video_id": videos["a"]["id"]})
    assert response.status_code == 200
    body = response.json()
    ids = [hit["video_id"] for hit in body["data"]]
    assert body["query_video_id"] == videos["a"]["id"]
    assert videos["a"]["id"] not in ids
    assert ids[0] == videos["a_copy"]["id"]
    assert [hit["rank"] for hit in body["data"]] == list(range(1, len(ids) + 1))
    scores = [hit["score"] for hit in body["data"]]
    assert scores == sorted(scores, reverse=True)
    top = body["data"][0]
    assert top["title"] == "a copy"
    assert set(top["segments"][0]) == {"query_start", "query_end", "target_start", "target_end", "score"}
    assert body["count"] == len(ids) and body["k"] == 20 and body["took_ms"] >= 0


def test_k_and_min_score(library) -> None:  # type: ignore[no-untyped-def]
    service, videos = library
    one = service.client.get("/search", params={"video_id": videos["a"]["id"], "k": 1}).json()
    assert [hit["video_id"] for hit in one["data"]] == [videos["a_copy"]["id"]]
    strict = service.client.get("/search", params={"video_id": videos["a"]["id"], "min_score": 0.9}).json()
    assert [hit["video_id"] for hit in strict["data"]] == [videos["a_copy"]["id"]]
    assert service.client.get("/search", params={"video_id": videos["a"]["id"], "k": 0}).status_code == 422
    too_many = service.client.get("/search", params={"video_id": videos["a"]["id"], "k": 100000})
    assert too_many.status_code == 422 and "at most" in too_many.json()["detail"]
    assert service.client.get("/search").status_code == 422  # video_id is required


def test_unknown_video_is_404(library) -> None:  # type: ignore[no-untyped-def]
    service, _ = library
    response = service.client.get("/search", params={"video_id": 999})
    assert response.status_code == 404 and response.json()["detail"] == "video 999 not found"


def test_deleted_videos_are_never_returned(library) -> None:  # type: ignore[no-untyped-def]
    service, videos = library
    assert service.client.delete(f"/videos/{videos['a_copy']['id']}").status_code == 204
    ids = [h["video_id"] for h in service.client.get("/search", params={"video_id": videos["a"]["id"]}).json()["data"]]
    assert videos["a_copy"]["id"] not in ids
    assert service.client.get("/search", params={"video_id": videos["a_copy"]["id"]}).status_code == 404


def test_videos_not_ready_are_409_and_never_returned(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(workers=0)
    backend = service.backend
    original = service.upload(media.video("a.mp4", seed=1)).json()["id"]
    assert backend.run_job(backend.catalog_queue.claim()) == "ready"
    copy = service.upload(media.reencoded("copy.avi", seed=1)).json()["id"]

    # Queued: 409.
    response = service.client.get("/search", params={"video_id": copy})
    assert response.status_code == 409 and "queued" in response.json()["detail"]

    # Processing, with its vectors already in the index (a worker between indexing and marking ready).
    assert backend.catalog_queue.claim() == copy
    features = backend.components.embedder.embed(
        backend.uploads.path_for(service.client.get(f"/videos/{copy}").json()["sha256"], ".avi")
    )
    backend.library.add(copy, features, still_wanted=lambda: True)
    assert backend.library.contains(copy)
    hits = service.client.get("/search", params={"video_id": original}).json()["data"]
    assert copy not in [hit["video_id"] for hit in hits]
    assert service.client.get("/search", params={"video_id": copy}).status_code == 409


def test_failed_video_is_409(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(max_frames=10)
    video = service.ingest(media.video("long.mp4", seed=1, seconds=30, fps=1, size=(32, 32)))
    assert video["status"] == "failed"
    response = service.client.get("/search", params={"video_id": video["id"]})
    assert response.status_code == 409 and "failed" in response.json()["detail"]


def _stored_files(data_dir: Path) -> list[Path]:
    """Files of the data directory but the catalog's and milvus-lite's (which seals and compacts
    its segments in the background, searches or not)."""
    return sorted(
        p for p in data_dir.rglob("*") if p.is_file() and "catalog" not in p.name and "milvus.db" not in p.parts
    )


def test_search_by_clip_stores_nothing(library) -> None:  # type: ignore[no-untyped-def]
    service, videos = library
    backend = service.backend
    before_files = _stored_files(backend.settings.data_dir)
    with open(backend.uploads.path_for(videos["b"]["sha256"], ".mp4"), "rb") as handle:
        clip = handle.read()
    response = service.client.post("/search", files={"file": ("clip.mp4", clip, "video/mp4")}, params={"k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query_video_id"] is None
    assert body["data"][0]["video_id"] == videos["b"]["id"]  # the clip is b itself: b may be returned
    assert len(body["data"]) <= 2
    assert service.client.get("/videos").json()["count"] == 4
    after_files = _stored_files(backend.settings.data_dir)
    assert after_files == before_files


def test_hits_carry_the_calibrated_score_the_raw_score_and_a_tier(library) -> None:  # type: ignore[no-untyped-def]
    service, videos = library
    query = {"video_id": videos["a"]["id"]}
    hits = service.client.get("/search", params=query).json()["data"]
    assert hits[0]["video_id"] == videos["a_copy"]["id"] and hits[0]["tier"] == "duplicate"
    assert all(0.0 <= hit["score"] <= 1.0 and -1.0 <= hit["raw_score"] <= 1.0 for hit in hits)
    copies = service.client.get("/search", params={**query, "tier": ["duplicate", "partial"]}).json()["data"]
    assert [hit["video_id"] for hit in copies] == [
        hit["video_id"] for hit in hits if hit["tier"] in ("duplicate", "partial")
    ]
    assert service.client.get("/search", params={**query, "tier": "copy"}).status_code == 422
    assert service.client.get("/search", params={**query, "min_score": -0.2}).status_code == 422  # the scale is 0-1
