"""Liveness, readiness, metrics and the JSON error contract."""

from __future__ import annotations

import threading

import pytest

from tests.app.apptools import AppClient, Media, light_components, wait_until


def test_readyz_is_503_until_the_index_is_loaded(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    def slow_factory(settings):  # type: ignore[no-untyped-def]
        assert release.wait(30)
        return light_components(settings)

    service = service_factory(factory=slow_factory, wait=False)
    client = service.client
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "loading" in response.json()["detail"] and response.headers["retry-after"]
    assert client.get("/search", params={"video_id": 1}).status_code == 503

    # Uploads wait too: nothing could check them yet.
    refused = service.upload(media.video("a.mp4", seed=1))
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert client.get("/videos").json()["count"] == 0

    release.set()
    wait_until(lambda: client.get("/readyz").status_code == 200)
    accepted = service.upload(media.video("a.mp4", seed=1))
    assert accepted.status_code == 202
    assert service.wait_done(accepted.json()["id"])["status"] == "ready"
    assert client.get("/readyz").json() == {"status": "ready", "indexed_videos": 1, "indexed_vectors": 4}


def test_failed_start_is_reported_by_readyz(service_factory) -> None:  # type: ignore[no-untyped-def]
    def broken(settings):  # type: ignore[no-untyped-def]
        raise FileNotFoundError("checkpoint not found: /nowhere/model.safetensors")

    service = service_factory(factory=broken, wait=False)
    wait_until(lambda: service.backend.startup_error is not None)
    response = service.client.get("/readyz")
    assert response.status_code == 503
    # The file is named, but not where the server keeps it.
    detail = response.json()["detail"]
    assert "failed to start" in detail and "model.safetensors" in detail and "/nowhere" not in detail
    assert service.client.get("/healthz").status_code == 200


def test_metrics(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(max_frames=10)
    good = service.ingest(media.video("a.mp4", seed=1))
    service.ingest(media.video("long.mp4", seed=2, seconds=30, fps=1, size=(32, 32)))  # fails: frame limit
    service.upload(media.video("a.mp4", seed=1))  # duplicate
    service.client.get("/search", params={"video_id": good["id"]})
    response = service.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'hapvr_ingest_total{outcome="ready"} 1.0',
        'hapvr_ingest_total{outcome="failed"} 1.0',
        'hapvr_uploads_total{outcome="accepted"} 2.0',
        'hapvr_uploads_total{outcome="duplicate"} 1.0',
        "hapvr_ingest_duration_seconds_count 1.0",
        "hapvr_queue_depth 0.0",
        'hapvr_videos{status="failed"} 1.0',
        'hapvr_search_latency_seconds_count{source="video"} 1.0',
        "hapvr_index_videos 1.0",
        "hapvr_index_vectors 4.0",
    ):
        assert line in text, line


def test_queue_depth_counts_waiting_jobs(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(workers=0)
    for seed in range(3):
        service.upload(media.video(f"{seed}.mp4", seed=seed))
    assert "hapvr_queue_depth 3.0" in service.client.get("/metrics").text


def test_errors_are_json_with_a_detail_message(service: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    client = service.client
    assert client.get("/nowhere").json() == {"detail": "Not Found"}
    assert client.put("/videos/1").status_code == 405 and "detail" in client.put("/videos/1").json()
    invalid = client.get("/videos/abc")
    assert invalid.status_code == 422
    assert isinstance(invalid.json()["detail"], str) and "video_id" in invalid.json()["detail"]

    def explode(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(service.backend.search, "by_video", explode)
    crashed = client.get("/search", params={"video_id": 1})
    assert crashed.status_code == 500
    assert crashed.json() == {"detail": "internal server error; the failure was logged"}
    assert client.get("/healthz").status_code == 200


def test_openapi_documents_the_upload_form(service: AppClient) -> None:
    schema = service.client.get("/openapi.json").json()
    form = schema["paths"]["/videos"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"file", "title", "external_id", "metadata"}
    assert "/search" in schema["paths"] and service.client.get("/docs").status_code == 200
