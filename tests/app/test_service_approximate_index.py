"""Past HAPVR_INDEX_THRESHOLD the index turns approximate (IVF); the service carries on across restarts."""

from __future__ import annotations

from tests.app.apptools import Media, assert_consistent


def test_switch_to_ivf_then_restart(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    settings = {"fps": 4.0, "index_threshold": 300, "workers": 2}  # 16 frames a video: IVF after 19 videos
    first = service_factory(**settings)
    ids = [first.upload(media.video(f"{i}.mp4", seed=200 + i)).json()["id"] for i in range(24)]
    copy = first.ingest(media.reencoded("copy.avi", seed=200))["id"]
    assert all(first.wait_done(v)["status"] == "ready" for v in ids)
    assert first.backend.library._index.kind != "flat"
    hits = first.client.get("/search", params={"video_id": copy, "k": 3}).json()["data"]
    assert hits[0]["video_id"] == ids[0]
    assert first.client.delete(f"/videos/{ids[1]}").status_code == 204
    first.stop()

    second = service_factory(**settings)
    assert not second.backend.reconcile_report.repaired
    assert second.backend.library._index.kind != "flat"
    assert assert_consistent(second) == (set(ids) - {ids[1]}) | {copy}
    hits = second.client.get("/search", params={"video_id": copy, "k": 3}).json()["data"]
    assert hits[0]["video_id"] == ids[0]
