"""`hapvr ingest`, `search` and `duplicates` against a real server on a loopback port, and
`duplicates` straight from its catalog."""

from __future__ import annotations

import csv
import io
import json
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli import main
from app.main import create_app
from indexer.settings import Settings
from tests.app.apptools import light_components, wait_until
from tests.app.live_server import LiveServer


@pytest.fixture
def collection(tmp_path: Path, source_clips: list[Path], edited_copy: Callable[..., Path]) -> Path:
    """A folder as users have them: clips, an edited copy, a sub-folder, a broken file and notes."""
    folder = tmp_path / "collection"
    (folder / "more").mkdir(parents=True)
    shutil.copy(source_clips[0], folder / "harbour.mp4")
    shutil.copy(edited_copy("reencode", source_clips[0]), folder / "harbour (copy).mp4")
    shutil.copy(source_clips[3], folder / "more" / "street.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 100)
    (folder / "notes.txt").write_text("not a video")
    return folder


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_search_and_export_a_collection(
    settings_factory: Callable[..., Settings], collection: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = settings_factory()
    with LiveServer(create_app(settings, light_components)) as server:
        api = ("--api", server.url)
        code, out, _ = run_cli(capsys, "ingest", str(collection), *api, "--jobs", "2", "--wait")
        assert code == 1  # the broken file
        assert "2 uploaded, 0 already stored, 1 failed" in out
        assert "broken.mp4: 422: not a usable video" in out

        # Again, recursively: what is stored is skipped, the sub-folder's video is new.
        code, out, _ = run_cli(capsys, "ingest", str(collection), *api, "--recursive", "--wait")
        assert "1 uploaded, 2 already stored, 1 failed" in out

        code, out, _ = run_cli(capsys, "search", str(collection / "harbour (copy).mp4"), *api, "--json")
        assert code == 0
        hits = json.loads(out)["data"]
        videos = server_videos(server.url)
        # The clip's own bytes are in the library: itself first, then its original.
        assert [h["video_id"] for h in hits[:2]] == [videos["harbour (copy).mp4"], videos["harbour.mp4"]]
        assert hits[1]["segments"]

        code, out, _ = run_cli(capsys, "search", "--id", str(videos["harbour.mp4"]), "--k", "1", *api)
        assert code == 0 and out.startswith(f"  1. video {videos['harbour (copy).mp4']} ")
        assert "in the query" in out

        wait_until(lambda: graph_ready(server.url))
        threshold = (hits[1]["score"] + hits[2]["score"]) / 2  # between the original and the unrelated clip
        export = tmp_path / "groups.csv"
        code, _, _ = run_cli(capsys, "duplicates", *api, "--min-score", f"{threshold}", "--out", str(export))
        assert code == 0
        rows = list(csv.DictReader(io.StringIO(export.read_text())))
        assert sorted(r["filename"] for r in rows) == ["harbour (copy).mp4", "harbour.mp4"]

        code, out, _ = run_cli(capsys, "search", "--id", "999", *api)
        assert code == 2

    # The catalog alone, with no service running, gives the same groups.
    code, out, _ = run_cli(
        capsys, "duplicates", "--data-dir", str(settings.data_dir), "--min-score", f"{threshold}", "--format", "json"
    )
    groups = json.loads(out)["data"]
    assert code == 0 and [sorted(v["filename"] for v in g["videos"]) for g in groups] == [
        ["harbour (copy).mp4", "harbour.mp4"]
    ]


def server_videos(url: str) -> dict[str, int]:
    import httpx

    return {v["filename"]: v["id"] for v in httpx.get(url + "/videos").json()["data"]}


def graph_ready(url: str) -> bool:
    import httpx

    return httpx.get(url + "/duplicates", params={"min_score": 0}).json()["videos"] == 3


def test_the_key_comes_from_the_environment(
    settings_factory: Callable[..., Settings],
    source_clips: list[Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = secrets.token_hex(24)
    with LiveServer(create_app(settings_factory(auth="required", admin_key=admin), light_components)) as server:
        code, out, _ = run_cli(capsys, "ingest", str(source_clips[1]), "--api", server.url)
        assert code == 1 and "401: an API key is required" in out
        monkeypatch.setenv("HAPVR_API_KEY", admin)
        code, out, _ = run_cli(capsys, "ingest", str(source_clips[1]), "--api", server.url, "--wait")
        assert code == 0 and "1 uploaded" in out


def test_ingest_into_a_data_directory_queues_for_the_service(
    settings_factory: Callable[..., Settings], collection: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_factory()
    data = ("--data-dir", str(settings.data_dir))
    code, out, _ = run_cli(capsys, "ingest", str(collection), "-r", *data)
    assert code == 1 and "3 uploaded, 0 already stored, 1 failed" in out
    assert "broken.mp4: not a usable video" in out
    code, out, _ = run_cli(capsys, "ingest", str(collection), "-r", *data)
    assert "0 uploaded, 3 already stored, 1 failed" in out
    assert run_cli(capsys, "ingest", str(collection), *data, "--wait")[0] == 2

    # The service indexes what was queued, and writes its match graph.
    with LiveServer(create_app(settings, light_components)) as server:
        wait_until(lambda: graph_ready(server.url), timeout=60)
        videos = server_videos(server.url)
    assert sorted(videos) == ["harbour (copy).mp4", "harbour.mp4", "street.mp4"]
