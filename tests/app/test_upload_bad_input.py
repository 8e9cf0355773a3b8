"""Bad input never breaks the service: a clear 4xx or a failed job with its reason.

Every test first ingests a good video and checks at the end that it is untouched: still
ready, its file, features and vectors intact, still searchable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.app.apptools import AppClient, Media


@pytest.fixture
def guarded(service_factory, media: Media) -> Iterator[tuple[AppClient, dict]]:  # type: ignore[no-untyped-def]
    """A service holding one good video; afterwards, asserts that it survived."""
    service = service_factory(max_upload_bytes=200_000, max_frames=40, max_pixels=640 * 480)
    good = service.ingest(media.video("good.mp4", seed=1))
    assert good["status"] == "ready"
    stored = service.backend.uploads.path_for(good["sha256"], ".mp4")
    before = stored.read_bytes()
    features = service.backend.library.store.get(good["id"]).frame_vectors.copy()
    yield service, good
    assert service.client.get("/healthz").status_code == 200
    assert service.client.get(f"/videos/{good['id']}").json()["status"] == "ready"
    assert stored.read_bytes() == before
    assert (service.backend.library.store.get(good["id"]).frame_vectors == features).all()
    assert service.backend.library.contains(good["id"])
    assert service.client.get("/search", params={"video_id": good["id"]}).status_code == 200
    assert not list(service.backend.settings.tmp_dir.iterdir()), "scratch files left behind"


def _no_new_videos(service: AppClient) -> None:
    assert service.client.get("/videos").json()["count"] == 1


def test_non_video_bytes(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    path = media.raw("junk.mp4", os.urandom(5000))
    response = service.upload(path, content_type="application/octet-stream")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("not a usable video")
    _no_new_videos(service)


def test_zero_length_upload(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    response = service.upload(media.raw("empty.mp4", b""))
    assert response.status_code == 400 and response.json()["detail"] == "the uploaded file is empty"
    _no_new_videos(service)


def test_truncated_file(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    whole = media.video("whole.mp4", seed=3).read_bytes()
    response = service.upload(media.raw("cut.mp4", whole[: len(whole) // 2]))
    # mp4 keeps its index at the end: half a file has no usable header.
    assert response.status_code == 422 and "not a usable video" in response.json()["detail"]
    _no_new_videos(service)


def test_truncated_stream_keeps_what_decodes(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    whole = media.video("whole.mkv", seed=4, seconds=8).read_bytes()
    video = service.ingest(media.raw("cut.mkv", whole[: len(whole) * 2 // 3]))
    # A stream that breaks off part-way is indexed from the frames before the break, and says so.
    assert video["status"] == "ready", video
    assert 1 <= video["frames_indexed"] < 8
    assert (video["frames_expected"], video["frames_decoded"]) == (8, video["frames_indexed"])
    assert video["warnings"] == [
        f"decoded {video['frames_indexed']} of the 8 frames the header promises (truncated or corrupt stream)"
    ]
    whole_video = service.ingest(media.video("whole.mkv", seed=4, seconds=8))
    assert (whole_video["frames_expected"], whole_video["frames_decoded"], whole_video["warnings"]) == (8, 8, [])


def test_corrupt_payload_fails_the_job_with_its_reason(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    whole = bytearray(media.video("whole.avi", seed=5, codec="mjpeg").read_bytes())
    header = 4096
    whole[header:] = os.urandom(len(whole) - header)
    response = service.upload(media.raw("corrupt.avi", bytes(whole)), content_type="video/x-msvideo")
    assert response.status_code == 202  # the header is intact: only decoding finds the damage
    video = service.wait_done(response.json()["id"])
    assert video["status"] == "failed"
    assert video["failure_reason"] and "\n" not in video["failure_reason"]


def test_audio_only(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    response = service.upload(media.audio_only("sound.m4a"), content_type="application/octet-stream")
    assert response.status_code == 422
    assert "video" in response.json()["detail"]
    _no_new_videos(service)


def test_resolution_past_the_limit(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    response = service.upload(media.video("big.mp4", seed=6, seconds=0.5, size=(800, 608)))
    assert response.status_code == 422
    assert "resolution 800x608" in response.json()["detail"]
    _no_new_videos(service)


def test_frame_count_past_the_limit_fails_the_job(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    # 60 s at the 1 fps sampling rate is 60 frames; the limit is 40.
    video = service.ingest(media.video("long.mp4", seed=7, seconds=60, fps=1, size=(32, 32)))
    assert video["status"] == "failed"
    assert "limit" in video["failure_reason"]
    assert video["id"] not in service.backend.library.store


def test_upload_over_the_size_limit(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    response = service.upload(media.raw("huge.mp4", os.urandom(300_000)))
    assert response.status_code == 413
    assert "200000 bytes" in response.json()["detail"]
    _no_new_videos(service)


def test_size_limit_is_enforced_while_streaming(guarded) -> None:  # type: ignore[no-untyped-def]
    """No Content-Length (chunked): the limit still cuts the upload off."""
    service, _ = guarded
    boundary = "testboundary"
    sent = []

    def body() -> Iterator[bytes]:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n'.encode()
        yield b"Content-Type: video/mp4\r\n\r\n"
        for _ in range(100):  # 6.4 MB in all, far past the limit
            sent.append(1)
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = service.client.post(
        "/videos", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413
    _no_new_videos(service)


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/json", "audio/mpeg"])
def test_declared_non_video_type(guarded, media: Media, content_type: str) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    response = service.upload(media.video("v.mp4", seed=8), content_type=content_type)
    assert response.status_code == 415
    assert content_type in response.json()["detail"]
    _no_new_videos(service)


def test_octet_stream_is_judged_by_decoding(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    video = service.ingest(media.video("v.mp4", seed=8))
    assert video["status"] == "ready"
    service.client.delete(f"/videos/{video['id']}")


def test_body_that_is_not_multipart(guarded) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    response = service.client.post("/videos", content=b"\0" * 100, headers={"content-type": "video/mp4"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]
    response = service.client.post("/videos", json={"file": "x"})
    assert response.status_code == 415


def test_malformed_multipart(guarded) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    response = service.client.post(
        "/videos",
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nabc',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 400
    response = service.client.post("/videos", content=b"x", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400


def test_search_with_a_bad_clip(guarded, media: Media) -> None:  # type: ignore[no-untyped-def]
    service, _ = guarded
    response = service.client.post("/search", files={"file": ("x.mp4", os.urandom(3000), "application/octet-stream")})
    assert response.status_code == 422 and "cannot be used" in response.json()["detail"]
    response = service.client.post("/search", files={"file": ("x.txt", b"hello", "text/plain")})
    assert response.status_code == 415
