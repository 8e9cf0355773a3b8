"""/videos over HTTP: upload, status, listing, de-duplication, deletion."""

from __future__ import annotations

import json

import pytest

from tests.app.apptools import AppClient, Media

# The same behaviour on both frame index backends (Milvus: milvus-lite in the data directory).
pytestmark = pytest.mark.parametrize("vector_index", ["faiss", "milvus"])


def test_upload_is_accepted_then_indexed(service: AppClient, media: Media) -> None:
    path = media.video("a.mp4", seed=1)
    response = service.upload(path, title="first", external_id="ext-1", metadata=json.dumps({"source": "test"}))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] in ("queued", "processing", "ready")
    assert body["status_url"] == f"/videos/{body['id']}"
    assert response.headers["location"] == body["status_url"]
    assert body["duplicate"] is False

    video = service.wait_done(body["id"])
    assert video["status"] == "ready", video
    assert video["title"] == "first" and video["external_id"] == "ext-1"
    assert video["metadata"] == {"source": "test"}
    assert video["frames_indexed"] == 4 and abs(video["duration"] - 4.0) < 0.3
    assert video["fps"] == 4.0
    assert video["attempts"] == 1 and video["failure_reason"] is None
    assert video["created_at"].endswith("Z") and video["indexed_at"]
    assert video["size_bytes"] == path.stat().st_size


def test_upload_is_stored_content_addressed(service: AppClient, media: Media) -> None:
    path = media.video("a.mp4", seed=1)
    video = service.ingest(path)
    stored = service.backend.uploads.path_for(video["sha256"], ".mp4")
    assert stored.read_bytes() == path.read_bytes()
    assert not list(service.backend.settings.tmp_dir.iterdir())  # no scratch file left behind


def test_same_bytes_return_the_existing_video(service: AppClient, media: Media) -> None:
    path = media.video("a.mp4", seed=1)
    first = service.ingest(path)
    again = service.upload(path, title="another title")
    assert again.status_code == 200  # already ready
    assert again.json()["id"] == first["id"] and again.json()["duplicate"] is True
    listing = service.client.get("/videos").json()
    assert listing["count"] == 1
    files = [p for p in service.backend.settings.uploads_dir.rglob("*") if p.is_file()]
    assert len(files) == 1


def test_list_paginates_and_filters(service: AppClient, media: Media) -> None:
    ids = [service.ingest(media.video(f"v{i}.mp4", seed=10 + i), external_id=f"e{i % 2}")["id"] for i in range(5)]
    page = service.client.get("/videos", params={"limit": 2, "offset": 1}).json()
    assert page["count"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [v["id"] for v in page["data"]] == ids[1:3]
    assert service.client.get("/videos", params={"status": "ready"}).json()["count"] == 5
    assert service.client.get("/videos", params={"status": "failed"}).json()["count"] == 0
    assert service.client.get("/videos", params={"external_id": "e0"}).json()["count"] == 3
    bad = service.client.get("/videos", params={"status": "done"})
    assert bad.status_code == 422 and isinstance(bad.json()["detail"], str)
    assert service.client.get("/videos", params={"limit": 0}).status_code == 422


def test_unknown_video_is_404(service: AppClient) -> None:
    response = service.client.get("/videos/12345")
    assert response.status_code == 404
    assert response.json() == {"detail": "video 12345 not found"}


def test_delete_removes_everything(service: AppClient, media: Media) -> None:
    keep = service.ingest(media.video("keep.mp4", seed=1))
    gone = service.ingest(media.video("gone.mp4", seed=2))
    backend = service.backend
    stored = backend.uploads.path_for(gone["sha256"], ".mp4")
    assert stored.exists() and gone["id"] in backend.library.store

    response = service.client.delete(f"/videos/{gone['id']}")
    assert response.status_code == 204
    assert service.client.get(f"/videos/{gone['id']}").status_code == 404
    assert service.client.delete(f"/videos/{gone['id']}").status_code == 404
    assert not stored.exists()
    assert gone["id"] not in backend.library.store
    assert not backend.library.contains(gone["id"])
    # The other video is untouched and still searchable.
    assert backend.library.contains(keep["id"]) and keep["id"] in backend.library.store
    assert service.client.get("/search", params={"video_id": keep["id"]}).status_code == 200
    # Uploading the same bytes again makes a new video.
    again = service.ingest(media.video("gone.mp4", seed=2))
    assert again["id"] != gone["id"] and again["status"] == "ready"


def test_delete_while_queued_leaves_nothing_behind(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(workers=0)  # nobody takes the job
    response = service.upload(media.video("a.mp4", seed=1))
    video_id = response.json()["id"]
    assert service.client.get(f"/videos/{video_id}").json()["status"] == "queued"
    assert service.client.delete(f"/videos/{video_id}").status_code == 204
    assert service.client.get("/videos").json()["count"] == 0
    assert not [p for p in service.backend.settings.uploads_dir.rglob("*") if p.is_file()]


def test_invalid_form_fields(service: AppClient, media: Media) -> None:
    path = media.video("a.mp4", seed=1)
    response = service.upload(path, metadata="{not json")
    assert response.status_code == 422 and "metadata" in response.json()["detail"]
    response = service.upload(path, metadata="[1, 2]")
    assert response.status_code == 422 and "JSON object" in response.json()["detail"]
    response = service.upload(path, colour="blue")
    assert response.status_code == 422 and "colour" in response.json()["detail"]
    response = service.upload(path, title="x" * 501)
    assert response.status_code == 422
    response = service.client.post("/videos", data={"title": "no file"}, files={"other": ("x", b"1")})
    assert response.status_code == 422
    assert service.client.get("/videos").json()["count"] == 0
    assert not list(service.backend.settings.tmp_dir.iterdir())
