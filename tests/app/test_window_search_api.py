"""A real clip shown small inside other real footage, found from both sides through the API.

The shipped model end to end: the picture-in-picture copy's inner window is embedded at ingest
(and for an uploaded clip at query time) and searched as another version of the video, so the
copy finds its original first and the original finds the copy first, whichever side is queried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli import main
from indexer.components import build_components
from tests.app.apptools import AppClient, assert_consistent

pytestmark = pytest.mark.parametrize("vector_index", ["faiss", "milvus"])


def _top(body: dict) -> int:
    assert body["data"], body
    return body["data"][0]["video_id"]


def test_picture_in_picture_found_from_both_sides(
    service_factory,
    source_clips: list[Path],
    edited_copy: Callable[..., Path],
    vector_index: str,
    model_cache: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # type: ignore[no-untyped-def]
    original, background, other = source_clips[0], source_clips[1], source_clips[3]
    pip = edited_copy("pip", original)  # the original at 35-50 % over the background clip
    assert background.stem in pip.stem  # the footage around the window is indexed too
    service: AppClient = service_factory(factory=build_components)
    ids = {
        name: service.ingest(path, title=name)["id"]
        for name, path in (("original", original), ("background", background), ("other", other), ("pip", pip))
    }
    store = service.backend.library.store
    # Only the copy has a window; the unedited clips get no variant.
    assert store.get_window(ids["pip"]) is not None
    assert [name for name in ("original", "background", "other") if store.get_window(ids[name]) is not None] == []
    assert_consistent(service)

    # Indexed videos searched by id, both ways.
    by_copy = service.client.get("/search", params={"video_id": ids["pip"], "k": 3}).json()
    assert _top(by_copy) == ids["original"], by_copy
    by_original = service.client.get("/search", params={"video_id": ids["original"], "k": 3}).json()
    assert _top(by_original) == ids["pip"], by_original
    # The ranges stay on the copy's own time axis (the crop keeps its times).
    segment = by_original["data"][0]["segments"][0]
    assert segment["target_end"] <= store.get(ids["pip"]).duration + 1.0

    # `hapvr compare` looks at the window too, and reports what the search does.
    if vector_index == "faiss":
        monkeypatch.setenv("HAPVR_CACHE_DIR", str(model_cache))
        capsys.readouterr()
        assert main(["compare", str(pip), str(original), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        hit = by_copy["data"][0]
        assert result["similarity"] == pytest.approx(hit["score"], abs=1e-3)
        assert result["tier"] == hit["tier"]

    # Uploaded clips, both ways: the indexed twin of the uploaded file comes first, then the other side.
    for clip, same, wanted in ((pip, "pip", "original"), (original, "original", "pip")):
        with clip.open("rb") as handle:
            response = service.client.post("/search", params={"k": 3}, files={"file": (clip.name, handle, "video/mp4")})
        assert response.status_code == 200, response.text
        ranked = [hit["video_id"] for hit in response.json()["data"]]
        assert ranked[:2] == [ids[same], ids[wanted]], (clip.name, response.json())

    # Deleting the copy removes its window from store and index.
    window_file = store.window_path_for(ids["pip"])
    assert window_file.exists()
    assert service.client.delete(f"/videos/{ids['pip']}").status_code == 204
    assert not window_file.exists() and store.get_window(ids["pip"]) is None
    assert service.backend.library._index.frames_of(ids["pip"]) == 0
    assert_consistent(service)
