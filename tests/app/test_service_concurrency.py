"""Parallel uploads, several workers, deletes racing with indexing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.app.apptools import LightEmbedder, Media, assert_consistent, light_components, wait_until


def test_parallel_uploads_with_several_workers(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(workers=3)
    paths = [media.video(f"{i}.mp4", seed=100 + i) for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda p: service.upload(p), paths))
    assert all(r.status_code == 202 for r in responses)
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 12
    assert all(service.wait_done(i)["status"] == "ready" for i in ids)
    assert assert_consistent(service) == set(ids)
    assert service.backend.pool.outcomes["ready"] == 12


def test_same_bytes_uploaded_in_parallel_make_one_video(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(workers=2)
    path = media.video("a.mp4", seed=1)
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: service.upload(path), range(5)))
    assert {r.json()["id"] for r in responses} == {responses[0].json()["id"]}
    assert sum(not r.json()["duplicate"] for r in responses) == 1
    assert service.client.get("/videos").json()["count"] == 1


def test_delete_during_indexing_keeps_nothing(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    started, release = threading.Event(), threading.Event()

    class Held(LightEmbedder):
        def embed(self, path):  # type: ignore[no-untyped-def]
            started.set()
            assert release.wait(30)
            return super().embed(path)

    def factory(settings):  # type: ignore[no-untyped-def]
        components = light_components(settings)
        components.embedder = Held(settings)
        return components

    service = service_factory(factory=factory)
    keep_path = media.video("keep.mp4", seed=2)
    video_id = service.upload(media.video("a.mp4", seed=1)).json()["id"]
    assert started.wait(30)
    assert service.client.get(f"/videos/{video_id}").json()["status"] == "processing"
    assert service.client.delete(f"/videos/{video_id}").status_code == 204
    release.set()
    wait_until(lambda: service.backend.pool.outcomes["deleted"] == 1)
    assert video_id not in service.backend.library.store
    assert not service.backend.library.contains(video_id)
    keep = service.ingest(keep_path)
    assert assert_consistent(service) == {keep["id"]}
