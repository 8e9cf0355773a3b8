"""Restarts after crashes: catalog, feature store and index end up agreeing.

Crashes are staged by leaving the data directory in the state a kill at that moment leaves
(the kill -9 of a real server process is in test_serve_process.py).
"""

from __future__ import annotations

import shutil

from sqlalchemy import update

from indexer.db import session_scope
from indexer.orm import Video
from tests.app.apptools import AppClient, Media, assert_consistent


def _index_files(service: AppClient) -> list:
    return sorted(service.backend.settings.index_dir.iterdir())


def test_interrupted_job_is_picked_up_again(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    first = service_factory(workers=0)
    video_id = first.upload(media.video("a.mp4", seed=1)).json()["id"]
    assert first.backend.catalog_queue.claim() == video_id  # a worker took it ... and the process died
    first.stop()

    second = service_factory()
    video = second.wait_done(video_id)
    assert video["status"] == "ready" and video["attempts"] == 2
    assert assert_consistent(second) == {video_id}


def test_job_interrupted_after_indexing_leaves_no_duplicates(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    """Killed after features and vectors were durable but before the row turned ready."""
    first = service_factory(workers=0)
    backend = first.backend
    video_id = first.upload(media.video("a.mp4", seed=1)).json()["id"]
    assert backend.catalog_queue.claim() == video_id
    features = backend.components.embedder.embed(
        backend.uploads.path_for(first.client.get(f"/videos/{video_id}").json()["sha256"], ".mp4")
    )
    backend.library.add(video_id, features, still_wanted=lambda: True)
    backend.library.persist()
    first.stop()

    second = service_factory()
    assert second.wait_done(video_id)["status"] == "ready"
    assert assert_consistent(second) == {video_id}
    assert second.backend.library._index.num_frames == features.num_frames


def test_stale_index_with_a_deleted_video_is_repaired(service_factory, media: Media, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = service_factory()
    keep = first.ingest(media.video("keep.mp4", seed=1))["id"]
    gone = first.ingest(media.video("gone.mp4", seed=2))["id"]
    saved = tmp_path / "saved-index"
    shutil.copytree(first.backend.settings.index_dir, saved)
    gone_features = first.backend.library.store.path_for(gone)
    features_copy = tmp_path / "gone.safetensors"
    shutil.copy(gone_features, features_copy)
    assert first.client.delete(f"/videos/{gone}").status_code == 204
    first.stop()
    # Crash staged: the row is gone, but the index and the store on disk still hold the video.
    shutil.rmtree(first.backend.settings.index_dir)
    shutil.copytree(saved, first.backend.settings.index_dir)
    shutil.copy(features_copy, gone_features)

    second = service_factory()
    report = second.backend.reconcile_report
    assert report.index_removed == [gone] and report.orphan_features == [gone]
    assert assert_consistent(second) == {keep}
    hits = second.client.get("/search", params={"video_id": keep}).json()["data"]
    assert gone not in [hit["video_id"] for hit in hits]


def test_missing_or_corrupt_index_is_rebuilt_from_the_store(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    first = service_factory()
    ids = {first.ingest(media.video(f"{i}.mp4", seed=i))["id"] for i in range(3)}
    first.stop()
    for path in _index_files(first):
        if path.suffix == ".faiss":
            path.write_bytes(b"garbage")

    second = service_factory()
    assert second.backend.reconcile_report.index_rebuilt
    assert assert_consistent(second) == ids
    second.stop()
    for path in _index_files(second):
        path.unlink()

    third = service_factory()
    assert third.backend.reconcile_report.index_rebuilt
    assert assert_consistent(third) == ids


def test_ready_video_without_features_is_indexed_again(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    first = service_factory()
    video_id = first.ingest(media.video("a.mp4", seed=1))["id"]
    first.stop()
    first.backend.library.store.delete(video_id)

    second = service_factory()
    assert second.backend.reconcile_report.missing_features == [video_id]
    video = second.wait_done(video_id)
    assert video["status"] == "ready"
    assert assert_consistent(second) == {video_id}


def test_interruptions_are_not_the_videos_fault(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    """A healthy video whose runs the process died in more often than max_attempts still gets indexed."""
    first = service_factory(workers=0, max_attempts=2)
    video_id = first.upload(media.video("a.mp4", seed=1)).json()["id"]
    first.stop()
    with session_scope(first.backend.sessions) as session:
        session.execute(
            update(Video).where(Video.id == video_id).values(status="processing", attempts=4, interruptions=3)
        )

    second = service_factory(max_attempts=2, max_interruptions=5)
    video = second.wait_done(video_id)
    assert (video["status"], video["attempts"], video["interruptions"]) == ("ready", 5, 4)


def test_a_job_that_keeps_killing_the_process_is_failed(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    first = service_factory(workers=0, max_interruptions=2)
    video_id = first.upload(media.video("a.mp4", seed=1)).json()["id"]
    first.stop()
    with session_scope(first.backend.sessions) as session:
        session.execute(
            update(Video).where(Video.id == video_id).values(status="processing", attempts=2, interruptions=1)
        )

    second = service_factory(max_interruptions=2)
    video = second.client.get(f"/videos/{video_id}").json()
    assert (
        video["status"] == "failed" and "interrupted (the process stopped mid-job) 2 times" in video["failure_reason"]
    )
    # Uploading the same bytes again gives it a fresh start.
    again = second.upload(media.video("a.mp4", seed=1))
    assert again.status_code == 202 and again.json()["id"] == video_id
    assert second.wait_done(video_id)["status"] == "ready"


def test_second_process_on_the_same_data_dir_is_refused(service_factory) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from indexer.backend import Backend, DataDirLocked

    first = service_factory()
    intruder = Backend(first.backend.settings)
    with pytest.raises(DataDirLocked, match="in use by pid"):
        intruder.open()
    intruder.engine.dispose()
