"""Re-indexing from the stored upload: `POST /videos/{id}/reindex` and `hapvr reindex`."""

from __future__ import annotations

import pytest

from app.cli import main as hapvr
from tests.app.apptools import AppClient, Media, assert_consistent


def test_reindex_embeds_the_stored_upload_again(service: AppClient, media: Media) -> None:
    video = service.ingest(media.video("a.mp4", seed=1))
    other = service.ingest(media.video("b.mp4", seed=2))
    calls = service.backend.components.embedder.calls

    response = service.client.post(f"/videos/{video['id']}/reindex")
    assert response.status_code == 202
    assert response.json() == {
        "id": video["id"],
        "status": "queued",
        "status_url": f"/videos/{video['id']}",
        "duplicate": False,
    }
    assert response.headers["location"] == f"/videos/{video['id']}"
    again = service.wait_done(video["id"])
    assert (again["status"], again["attempts"], again["interruptions"]) == ("ready", 1, 0)
    assert again["indexed_at"] > video["indexed_at"]
    assert service.backend.components.embedder.calls == calls + 1
    assert assert_consistent(service) == {video["id"], other["id"]}
    hits = service.client.get("/search", params={"video_id": other["id"]}).json()["data"]
    assert video["id"] in [hit["video_id"] for hit in hits]


def test_reindex_answers_404_and_409(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(workers=0)
    queued = service.upload(media.video("a.mp4", seed=1)).json()["id"]
    assert service.client.post("/videos/999/reindex").status_code == 404
    response = service.client.post(f"/videos/{queued}/reindex")
    assert response.status_code == 409 and response.json()["detail"] == (
        f"video {queued} is already queued; re-index it once it is ready or failed"
    )


def test_a_video_whose_upload_is_gone_cannot_be_reindexed(service: AppClient, media: Media) -> None:
    video = service.ingest(media.video("a.mp4", seed=1))
    service.backend.uploads.path_for(video["sha256"], ".mp4").unlink()
    response = service.client.post(f"/videos/{video['id']}/reindex")
    assert response.status_code == 409 and "upload the file again" in response.json()["detail"]
    assert service.client.get(f"/videos/{video['id']}").json()["status"] == "ready"  # untouched


def test_a_failed_reindex_leaves_nothing_of_the_old_features(service: AppClient, media: Media) -> None:
    keep = service.ingest(media.video("keep.mp4", seed=1))
    video = service.ingest(media.video("a.mp4", seed=2))
    stored = service.backend.uploads.path_for(video["sha256"], ".mp4")
    stored.write_bytes(stored.read_bytes()[:200])  # the stored copy went bad since
    assert service.client.post(f"/videos/{video['id']}/reindex").status_code == 202
    failed = service.wait_done(video["id"])
    assert failed["status"] == "failed" and failed["failure_reason"]
    assert assert_consistent(service) == {keep["id"]}


def test_a_failed_video_gets_another_chance(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    first = service_factory(max_frames=10)
    video = first.ingest(media.video("long.mp4", seed=1, seconds=20, fps=1))
    assert video["status"] == "failed" and "over the limit of 10" in video["failure_reason"]
    first.stop()

    second = service_factory(max_frames=100)
    assert second.client.post(f"/videos/{video['id']}/reindex").status_code == 202
    again = second.wait_done(video["id"])
    assert (again["status"], again["attempts"], again["failure_reason"]) == ("ready", 1, None)


def test_reindex_command(service_factory, media: Media, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    first = service_factory()
    ids = [first.ingest(media.video(f"{seed}.mp4", seed=seed))["id"] for seed in (1, 2, 3)]
    gone = first.client.get(f"/videos/{ids[2]}").json()
    first.stop()
    first.backend.uploads.path_for(gone["sha256"], ".mp4").unlink()
    data_dir = str(first.backend.settings.data_dir)

    assert hapvr(["reindex", str(ids[0]), "999", str(ids[2]), "--data-dir", data_dir]) == 1
    captured = capsys.readouterr()
    assert "queued 1 videos for indexing; 2 refused" in captured.out
    assert "video 999 not found" in captured.err and f"upload of video {ids[2]} is missing" in captured.err

    second = service_factory()
    assert [second.wait_done(v)["attempts"] for v in ids[:2]] == [1, 1]
    first_again, untouched = (second.client.get(f"/videos/{v}").json() for v in ids[:2])
    assert first_again["indexed_at"] > untouched["indexed_at"]  # embedded again
    # Nothing could embed it again: failed with the reason, not left ready with old features.
    failed = second.client.get(f"/videos/{ids[2]}").json()
    assert failed["status"] == "failed" and "upload the file again" in failed["failure_reason"]
    assert assert_consistent(second) == set(ids[:2])
