"""No input reaches the catalog in a form it cannot take: a clear 422, never a 500, on both
catalogs (SQLite embedded, PostgreSQL deployed), and what is accepted comes back as it was sent.

Every case here answered 500 before: ids and offsets past SQLite's 64 bits or PostgreSQL's 32,
metadata nested 10,000 deep (RecursionError) or with a 5,000-digit integer, NaN and Infinity
(null on SQLite, an error on PostgreSQL), NUL in text (PostgreSQL refuses it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from indexer.settings import Settings
from tests.app.apptools import AppClient, Media, light_components
from tests.app.catalogs import CATALOGS, catalog_settings, postgres_down


@pytest.fixture(scope="module", params=CATALOGS)
def catalog_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[AppClient]:
    """One app per catalog for the module (no indexer: these tests are about the catalog)."""
    if request.param == "postgresql" and postgres_down():
        pytest.skip(postgres_down() or "")
    root = tmp_path_factory.mktemp(request.param)
    with catalog_settings(request.param) as catalog:
        settings = Settings(data_dir=root / "data", cache_dir=model_cache, workers=0, **catalog)  # type: ignore[arg-type]
        client = TestClient(create_app(settings, light_components), raise_server_exceptions=False)
        client.__enter__()
        app = AppClient(client)
        try:
            assert app.backend.wait_ready(60), app.backend.startup_error
            yield app
        finally:
            app.stop()


@pytest.fixture
def fresh(media: Media) -> Iterator[Path]:
    """A video no test has uploaded yet (identical bytes would return the earlier video)."""
    yield media.video(f"{uuid.uuid4().hex}.mp4", seed=uuid.uuid4().int % 10_000, seconds=1)


def _refused(response, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    body = response.json()
    assert isinstance(body["detail"], str)
    for word in words:
        assert word in body["detail"], body["detail"]


def _count(app: AppClient) -> int:
    return int(app.client.get("/videos").json()["count"])


@pytest.mark.parametrize(
    ("method", "url", "names"),
    [
        ("GET", f"/videos/{10**30}", "video_id"),
        ("DELETE", f"/videos/{10**30}", "video_id"),
        ("GET", f"/videos/{2**31}", "video_id"),
        ("DELETE", f"/videos/{2**31}", "video_id"),
        ("GET", "/videos/0", "video_id"),
        ("GET", f"/search?video_id={2**63}", "video_id"),
        ("GET", f"/search?video_id={2**31}", "video_id"),
        ("GET", f"/videos?offset={2**63}", "offset"),
        ("GET", f"/videos?offset={2**31}", "offset"),
        ("GET", "/videos?offset=-1", "offset"),
        ("GET", "/videos?limit=501", "limit"),
        ("GET", f"/search?video_id=1&k={10**22}", "k"),
    ],
)
def test_integers_out_of_range_are_422(catalog_app: AppClient, method: str, url: str, names: str) -> None:
    response = catalog_app.client.request(method, url)
    _refused(response, names)


def test_the_largest_id_and_offset_are_served(catalog_app: AppClient) -> None:
    """2**31 - 1 is the last value of PostgreSQL's integer column: asked for, it is an answer."""
    top = 2**31 - 1
    assert catalog_app.client.get(f"/videos/{top}").status_code == 404
    assert catalog_app.client.delete(f"/videos/{top}").status_code == 404
    assert catalog_app.client.get("/search", params={"video_id": top}).status_code == 404
    listing = catalog_app.client.get("/videos", params={"offset": top})
    assert listing.status_code == 200 and listing.json()["data"] == []


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ("[" * 10_000 + "]" * 10_000, ["metadata", "bytes"]),
        ('{"a": ' + "[" * 20 + "]" * 20 + "}", ["metadata", "21 levels", "limit is 16"]),
        ('{"a": ' + "9" * 5000 + "}", ["metadata", "5000 digits"]),
        ('{"a": -' + "9" * 20 + "}", ["metadata", "20 digits"]),
        ('{"a": NaN}', ["metadata", "NaN"]),
        ('{"a": [Infinity]}', ["metadata", "Infinity"]),
        ('{"a": -Infinity}', ["metadata", "-Infinity"]),
        ('{"a": 1e400}', ["metadata", "out of range"]),
        # The schema bounds every number, as a validator sees it: 1e19 is the integer 10**19.
        ('{"a": 1e19}', ["metadata", "out of range", "9999999999999999999"]),
        ('{"a": [-2.5e30]}', ["metadata", "out of range"]),
        ('{"a": "x\\u0000y"}', ["metadata", "NUL"]),
        ('{"x\\u0000": 1}', ["metadata", "NUL"]),
        ('{"a": "\\ud800"}', ["metadata", "surrogate"]),
        ("[1, 2]", ["metadata", "JSON object"]),
        ("{not json", ["metadata", "not valid JSON"]),
    ],
)
def test_metadata_the_catalog_cannot_keep_is_422(
    catalog_app: AppClient, fresh: Path, metadata: str, words: list[str]
) -> None:
    before = _count(catalog_app)
    _refused(catalog_app.upload(fresh, metadata=metadata), *words)
    assert _count(catalog_app) == before
    assert not list(catalog_app.backend.settings.tmp_dir.iterdir()), "scratch file left behind"


@pytest.mark.parametrize("field", ["title", "external_id"])
@pytest.mark.parametrize("char", ["\x00", "\x07", "\n", "\x1b", "\x7f", "\x85"])
def test_control_characters_in_text_fields_are_422(catalog_app: AppClient, fresh: Path, field: str, char: str) -> None:
    before = _count(catalog_app)
    _refused(catalog_app.upload(fresh, **{field: f"a{char}b"}), field, f"U+{ord(char):04X}")
    assert _count(catalog_app) == before


@pytest.mark.parametrize("char", ["\x00", "\x01", "\t"])
def test_control_characters_in_the_filter_are_422(catalog_app: AppClient, char: str) -> None:
    _refused(catalog_app.client.get("/videos", params={"external_id": f"cms{char}1"}), "external_id")


def test_what_is_accepted_comes_back_as_sent(catalog_app: AppClient, fresh: Path) -> None:
    """Text at its limits, every kind of JSON value, escapes that both databases store safely."""
    title = "Hafen, Aufnahme 2 — 港口 🎬 " + "é" * 400
    title = title[:500]
    metadata = {
        "camera": 'B\ttab\nnewline "quoted" \\ back',
        "int": -(10**19 - 1),
        "float": 1.5e18,
        "small": 5e-324,
        "flags": [True, False, None],
        "nested": {"level": [[[[[[[[[[[[[[1]]]]]]]]]]]]]]},
        "": "empty key",
        "unicode": "\u202eright-to-left \U0001f600",
    }
    response = catalog_app.upload(fresh, title=title, external_id="cms-ü-1", metadata=json.dumps(metadata))
    assert response.status_code == 202, response.text
    video = catalog_app.client.get(f"/videos/{response.json()['id']}").json()
    assert video["title"] == title and video["external_id"] == "cms-ü-1"
    assert video["metadata"] == metadata
    found = catalog_app.client.get("/videos", params={"external_id": "cms-ü-1"}).json()
    assert [v["id"] for v in found["data"]] == [video["id"]]


def test_metadata_limits_are_settings(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    """With room for 10,000 levels of text, the depth limit (not a RecursionError) refuses it."""
    service = service_factory(max_metadata_bytes=60_000, max_metadata_depth=3, max_metadata_int_digits=3, workers=0)
    path = media.video("a.mp4", seed=1, seconds=1)
    _refused(service.upload(path, metadata="[" * 10_000 + "]" * 10_000), "10000 levels", "limit is 3")
    _refused(service.upload(path, metadata='{"a": [[[1]]]}'), "4 levels")
    _refused(service.upload(path, metadata='{"a": 1234}'), "4 digits", "limit is 3")
    _refused(service.upload(path, metadata='{"a": 1.5e10}'), "out of range", "±999")
    assert service.upload(path, metadata='{"a": [999, -999.0, 1.5e2]}').status_code == 202
