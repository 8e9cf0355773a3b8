"""Real footage end to end through the HTTP API, with the shipped model.

Ten real clips from registry packages and one edited copy of each (a different edit per
clip) are uploaded and indexed; searching with a copy must return its original first,
ahead of every unrelated clip, with matched time ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from indexer.settings import Settings
from tests.app.apptools import AppClient

# The shipped model end to end over the API on real footage: a long run (`make test-slow`).
pytestmark = pytest.mark.slow

# Edits the model handles today; picture-in-picture and partial splices need the trained comparator.
EDITS = ("reencode", "rescale", "crop", "color", "blur", "overlay", "letterbox", "subclip", "fps", "speed", "hflip")


@pytest.fixture(scope="module")
def indexed(
    source_clips: list[Path],
    edited_copy: Callable[..., Path],
    tmp_path_factory: pytest.TempPathFactory,
    model_cache: Path,
) -> Iterator[tuple[AppClient, dict[Path, int], dict[Path, tuple[str, int]]]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("real") / "data", workers=2, cache_dir=model_cache)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        service = AppClient(client)
        assert service.backend.wait_ready(180), service.backend.startup_error
        originals = {clip: service.upload(clip, title=clip.stem).json()["id"] for clip in source_clips}
        copies = {}
        for number, clip in enumerate(source_clips):
            kind = EDITS[number % len(EDITS)]
            copies[clip] = (kind, service.upload(edited_copy(kind, clip), title=f"{kind} of {clip.stem}").json()["id"])
        for video_id in [*originals.values(), *(v for _, v in copies.values())]:
            video = service.wait_done(video_id, timeout=300)
            assert video["status"] == "ready", video
        yield service, originals, copies


def test_each_copy_finds_its_original_first(indexed) -> None:  # type: ignore[no-untyped-def]
    service, originals, copies = indexed
    assert len(originals) >= 8
    failures = []
    for clip, (kind, copy_id) in copies.items():
        body = service.client.get("/search", params={"video_id": copy_id, "k": 5}).json()
        hits = body["data"]
        assert copy_id not in [hit["video_id"] for hit in hits]
        if not hits or hits[0]["video_id"] != originals[clip]:
            failures.append((kind, clip.name, [(h["video_id"], round(h["score"], 3)) for h in hits[:3]]))
            continue
        top = hits[0]
        unrelated = [hit["score"] for hit in hits[1:]]
        assert all(top["score"] > score for score in unrelated)
        assert top["segments"], f"{kind} copy of {clip.name}: no matched time range"
    assert not failures, failures


def test_each_original_finds_its_copy_first(indexed) -> None:  # type: ignore[no-untyped-def]
    service, originals, copies = indexed
    hits_at_top = sum(
        service.client.get("/search", params={"video_id": originals[clip], "k": 1}).json()["data"][0]["video_id"]
        == copy_id
        for clip, (_, copy_id) in copies.items()
    )
    assert hits_at_top == len(copies)


def test_search_by_uploaded_clip(indexed, edited_copy: Callable[..., Path]) -> None:  # type: ignore[no-untyped-def]
    service, originals, _ = indexed
    clip = next(iter(originals))
    path = edited_copy("crop", clip, seed=7)  # a copy the service has never seen
    with open(path, "rb") as handle:
        response = service.client.post("/search", files={"file": (path.name, handle, "video/mp4")}, params={"k": 3})
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["video_id"] == originals[clip]
    assert service.client.get("/videos").json()["count"] == 2 * len(originals)


def test_compare_and_search_report_the_same_ranges(  # type: ignore[no-untyped-def]
    indexed, model_cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hapvr compare COPY ORIGINAL` and `GET /search?video_id=COPY` agree on score, tier and ranges."""
    import json

    from app.cli import main

    service, originals, copies = indexed
    clip = next(clip for clip, (kind, _) in copies.items() if kind == "subclip")
    original_id, (_, copy_id) = originals[clip], copies[clip]
    hits = service.client.get("/search", params={"video_id": copy_id, "k": 5}).json()["data"]
    hit = next(hit for hit in hits if hit["video_id"] == original_id)

    def stored(video_id: int) -> str:
        row = service.client.get(f"/videos/{video_id}").json()
        return str(service.backend.uploads.path_for(row["sha256"], Path(row["filename"]).suffix))

    monkeypatch.setenv("HAPVR_CACHE_DIR", str(model_cache))
    capsys.readouterr()
    assert main(["compare", stored(copy_id), stored(original_id), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["similarity"] == pytest.approx(hit["score"], abs=1e-3)
    assert result["raw_score"] == pytest.approx(hit["raw_score"], abs=1e-3)
    assert result["tier"] == hit["tier"] and 0.0 <= hit["score"] <= 1.0
    keys = ("query_start", "query_end", "target_start", "target_end")
    ranges = [segment[key] for segment in result["segments"] for key in keys]
    expected = [segment[key] for segment in hit["segments"] for key in keys]
    assert ranges and ranges == pytest.approx(expected, abs=1e-3)
