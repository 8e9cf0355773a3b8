"""Restarts after crashes: catalog, feature store and index end up agreeing.

Crashes are staged by leaving the data directory in the state a kill at that moment leaves
(the kill -9 of a real server process is in test_serve_process.py).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from app.cli import main as hapvr
from indexer.catalog import CheckpointMismatch
from indexer.db import session_scope
from indexer.orm import Video
from tests.app.apptools import AppClient, Media, assert_consistent, wait_until


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


def test_uploads_are_refused_after_a_failed_start(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    def broken(settings):  # type: ignore[no-untyped-def]
        raise RuntimeError("no model")

    service = service_factory(factory=broken, wait=False)
    wait_until(lambda: service.backend.startup_error is not None)
    clip = media.video("a.mp4", seed=1)
    for response in (service.upload(clip), service.client.post("/videos/1/reindex")):
        assert response.status_code == 503 and response.headers["retry-after"]
        assert "failed to start" in response.json()["detail"]
    with open(clip, "rb") as handle:
        assert service.client.post("/search", files={"file": ("a.mp4", handle, "video/mp4")}).status_code == 503
    assert service.client.get("/videos").json()["count"] == 0  # nothing queued that no worker would take


def _orphan(uploads_root: Path, sha256: str, suffix: str = ".mp4", *, age_s: float = 0.0) -> Path:
    """A file at a content address with no row: what a kill between commit and insert leaves."""
    path = uploads_root / sha256[:2] / sha256[2:4] / f"{sha256}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a story")
    if age_s:
        moment = time.time() - age_s
        os.utime(path, (moment, moment))
    return path


def test_orphan_uploads_are_removed_at_start(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    first = service_factory()
    kept = first.ingest(media.video("keep.mp4", seed=1))
    first.stop()
    settings = first.backend.settings
    stored = first.backend.uploads.path_for(kept["sha256"], ".mp4")
    orphan = _orphan(settings.uploads_dir, "ab" * 32)
    scratch = settings.tmp_dir / "upload-interrupted"
    scratch.write_bytes(b"partial")
    # Not at a content address: never ours to judge.
    stray = [settings.uploads_dir / "README", settings.uploads_dir / "ab" / "ab" / "notes.txt"]
    for path in stray:
        path.write_text("keep me")

    second = service_factory()
    assert not orphan.exists() and not scratch.exists()
    assert stored.is_file() and all(path.exists() for path in stray)
    assert second.client.get(f"/videos/{kept['id']}").json()["status"] == "ready"
    assert assert_consistent(second) == {kept["id"]}


def test_the_deployed_sweep_leaves_young_files_alone(service: AppClient) -> None:
    """Other replicas share the store: a file younger than the grace period may be mid-upload."""
    root = service.backend.settings.uploads_dir
    young = _orphan(root, "cd" * 32)
    old = _orphan(root, "ef" * 32, age_s=7200)
    assert service.backend.ingest.remove_orphan_uploads(min_age_s=3600) == 1
    assert young.exists() and not old.exists()


def test_a_checkpoint_switch_refuses_to_start_until_reindexed(service_factory, media: Media, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from model.checkpoint import fingerprint, load_default, save_checkpoint

    first = service_factory()
    ids = {first.ingest(media.video(f"{seed}.mp4", seed=seed))["id"] for seed in (1, 2)}
    first.stop()
    bundle = load_default()
    bundle.provenance = {**bundle.provenance, "note": "another training run"}
    other = save_checkpoint(tmp_path / "other.safetensors", bundle)

    with pytest.raises(CheckpointMismatch, match=rf"\(2 with {fingerprint()}\).*\({fingerprint(other)}\)"):
        service_factory(checkpoint=other)
    assert hapvr(["reindex", "--all", "--data-dir", str(first.backend.settings.data_dir)]) == 0

    second = service_factory(checkpoint=other)
    for video_id in ids:
        video = second.wait_done(video_id)
        assert (video["status"], video["checkpoint"]) == ("ready", fingerprint(other))
    assert assert_consistent(second) == ids
    assert second.backend.library.store.get(min(ids)).checkpoint == fingerprint(other)
