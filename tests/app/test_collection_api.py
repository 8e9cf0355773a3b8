"""The collection routes: pictures, the stored file with HTTP Range, PATCH, and duplicate groups
read from the match graph as videos are indexed and deleted."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from indexer import match_graph
from indexer.db import session_scope
from tests.app.apptools import AppClient, Media, wait_until


def graph_settled(service: AppClient) -> Callable[[], bool]:
    def settled() -> bool:
        with session_scope(service.backend.sessions) as session:
            return not match_graph.pending(session=session)

    return settled


def test_thumbnail_and_strip_are_jpeg_of_a_ready_video(service: AppClient, source_clips: list[Path]) -> None:
    video = service.ingest(source_clips[0])
    for route in ("thumbnail", "strip"):
        response = service.client.get(f"/videos/{video['id']}/{route}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert response.content[:3] == b"\xff\xd8\xff"
    from PIL import Image

    strip = Image.open(io.BytesIO(service.client.get(f"/videos/{video['id']}/strip").content))
    poster = Image.open(io.BytesIO(service.client.get(f"/videos/{video['id']}/thumbnail").content))
    assert strip.height == 72 and strip.width > 5 * strip.height  # frames side by side
    assert min(poster.size) == 180
    assert service.client.get("/videos/999/thumbnail").status_code == 404


def test_failed_video_has_no_thumbnail_but_its_file(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(max_frames=2)  # a 4-frame video fails its indexing job
    video = service.ingest(media.video("long.mp4", seed=1))
    assert video["status"] == "failed" and video["failure_reason"]
    response = service.client.get(f"/videos/{video['id']}/thumbnail")
    assert response.status_code == 409 and "failed" in response.json()["detail"]
    assert service.client.get(f"/videos/{video['id']}/file").status_code == 200


def test_file_is_served_with_ranges(service: AppClient, source_clips: list[Path]) -> None:
    video = service.ingest(source_clips[0])
    data = source_clips[0].read_bytes()
    whole = service.client.get(f"/videos/{video['id']}/file")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    part = service.client.get(f"/videos/{video['id']}/file", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = service.client.get(f"/videos/{video['id']}/file", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    outside = service.client.get(f"/videos/{video['id']}/file", headers={"Range": f"bytes={len(data) + 5}-"})
    assert outside.status_code == 416
    assert service.client.get("/videos/999/file").status_code == 404


def test_patch_changes_only_the_fields_sent(service: AppClient, media: Media) -> None:
    video = service.ingest(media.video("a.mp4", seed=1), title="old", external_id="e-1", metadata='{"a": 1}')
    url = f"/videos/{video['id']}"
    changed = service.client.patch(url, json={"title": "Harbour, take 2"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["title"] == "Harbour, take 2" and body["external_id"] == "e-1" and body["metadata"] == {"a": 1}
    body = service.client.patch(url, json={"metadata": {"camera": "B", "n": [1, 2]}, "external_id": None}).json()
    assert body["metadata"] == {"camera": "B", "n": [1, 2]} and body["external_id"] is None
    assert service.client.get(url).json()["title"] == "Harbour, take 2"


def test_patch_refuses_what_an_upload_refuses(service: AppClient, media: Media) -> None:
    video = service.ingest(media.video("a.mp4", seed=1), title="kept")
    url = f"/videos/{video['id']}"
    for payload, field in (
        ({"title": "a\nb"}, "title"),
        ({"title": "x" * 501}, "title"),
        ({"metadata": [1, 2]}, "metadata"),
        ({"metadata": {"k": "a\u0000b"}}, "metadata"),
        ({"colour": "red"}, "colour"),
        ({"external_id": {}}, "external_id"),  # not text, though falsy
        ({"title": 0}, "title"),
    ):
        response = service.client.patch(url, json=payload)
        assert response.status_code == 422, (payload, response.text)
        assert field in response.json()["detail"]
    deep = '{"metadata": ' + "[" * 40 + "]" * 40 + "}"
    response = service.client.patch(url, content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "levels deep" in response.json()["detail"]
    assert service.client.patch(url, content=b"[]").status_code == 400
    assert service.client.patch("/videos/999", json={"title": "x"}).status_code == 404
    assert service.client.get(url).json()["title"] == "kept"


def test_duplicates_are_groups_of_the_match_graph(
    service: AppClient, source_clips: list[Path], edited_copy: Callable[..., Path]
) -> None:
    first, other = source_clips[0], source_clips[3]
    original = service.ingest(first, title="original")["id"]
    copy = service.ingest(edited_copy("reencode", first), title="copy")["id"]
    unrelated = service.ingest(other, title="unrelated")["id"]
    wait_until(graph_settled(service))
    hits = service.client.get("/search", params={"video_id": copy}).json()["data"]
    copy_hit = next(h for h in hits if h["video_id"] == original)
    copy_score = copy_hit["score"]
    other_score = max((h["score"] for h in hits if h["video_id"] == unrelated), default=-1.0)
    assert copy_score > other_score
    threshold = (copy_score + other_score) / 2

    body = service.client.get("/duplicates", params={"min_score": threshold}).json()
    assert body["count"] == 1 and body["videos"] == 2
    group = body["data"][0]
    assert [v["id"] for v in group["videos"]] == [original, copy]
    assert group["max_score"] >= threshold and group["edges"][0]["tier"] == copy_hit["tier"]
    # By default the groups are the copies: partial matches or stronger (HAPVR_DUPLICATES_TIER).
    copies = service.client.get("/duplicates").json()
    assert copies["tier"] == "partial"
    assert copies["count"] == (1 if copy_hit["tier"] in ("duplicate", "partial") else 0)
    everything = service.client.get("/duplicates", params={"min_score": 0.0}).json()
    assert everything["data"][0]["size"] == 3  # every pair is an edge at the lowest threshold

    exported = service.client.get("/duplicates", params={"min_score": threshold, "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["group"], r["video_id"], r["title"]) for r in rows] == [
        ("1", str(original), "original"),
        ("1", str(copy), "copy"),
    ]

    assert service.client.delete(f"/videos/{copy}").status_code == 204
    assert service.client.get("/duplicates", params={"min_score": threshold}).json()["count"] == 0
    assert service.client.get("/duplicates", params={"tier": "sharing"}).status_code == 422


def test_graph_is_written_again_when_a_video_is_reindexed(
    service: AppClient, source_clips: list[Path], edited_copy: Callable[..., Path]
) -> None:
    original = service.ingest(source_clips[1])["id"]
    copy = service.ingest(edited_copy("reencode", source_clips[1]))["id"]
    wait_until(graph_settled(service))
    with session_scope(service.backend.sessions) as session:
        before = match_graph.pair(original, copy, session=session)
    assert before is not None and before.segments
    assert service.client.post(f"/videos/{original}/reindex").status_code == 202
    assert service.wait_done(original)["status"] == "ready"
    wait_until(graph_settled(service))
    with session_scope(service.backend.sessions) as session:
        after = match_graph.pair(copy, original, session=session)
    # Found again by the re-indexed video's own search; seen from the copy, segments are flipped.
    assert after is not None and abs(after.score - before.score) < 1e-4
    assert after.segments[0]["query_start"] == before.segments[0]["target_start"]


def test_components_join_chains_and_keep_apart_the_rest() -> None:
    edges = [(1, 2, 0.9, None), (2, 3, 0.8, None), (5, 4, 0.7, None), (6, 6, 0.5, None)]
    groups = match_graph.components(edges)
    assert [g.video_ids for g in groups] == [[1, 2, 3], [4, 5], [6]]
    assert groups[0].max_score == 0.9 and len(groups[0].edges) == 2
