"""An error answer never costs the client its keep-alive connection (a real uvicorn server).

Before, an exception that reached the server after the 500 had been sent made it close the
connection: the client saw a reset on its next request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from tests.app.apptools import Media, light_components
from tests.app.live_server import LiveServer


@pytest.fixture
def live(settings_factory) -> Iterator[tuple[LiveServer, object]]:  # type: ignore[no-untyped-def]
    app = create_app(settings_factory(max_upload_bytes=100_000), light_components)
    with LiveServer(app) as server:
        assert app.state.backend.wait_ready(60), app.state.backend.startup_error
        yield server, app.state.backend


def _local_port(response: httpx.Response) -> int:
    """The client's own port: the same port means the same TCP connection."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def test_bad_requests_keep_the_connection(live, media: Media, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server, backend = live
    video = media.video("good.mp4", seed=1)
    text = media.raw("notes.txt", b"not a video")
    big = media.raw("big.mp4", b"\0" * 300_000)

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the search")

    def upload(path: Path, content_type: str, **fields: str) -> dict:
        return {"files": {"file": (path.name, path.read_bytes(), content_type)}, "data": fields}

    bad: list[tuple[str, str, dict, int]] = [
        ("GET", f"/videos/{10**30}", {}, 422),
        ("DELETE", f"/videos/{2**63}", {}, 422),
        ("GET", "/videos", {"params": {"offset": 2**63}}, 422),
        ("GET", "/videos", {"params": {"external_id": "a\x00b"}}, 422),
        ("GET", "/videos/7", {}, 404),
        ("PUT", "/videos", {}, 405),
        ("POST", "/videos", upload(text, "text/plain"), 415),
        ("POST", "/videos", upload(video, "video/mp4", metadata="[" * 5000 + "]" * 5000), 422),
        ("POST", "/videos", upload(big, "video/mp4"), 413),
        ("GET", "/search", {"params": {"video_id": 1}}, 500),
    ]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        port = _local_port(client.get("/healthz"))
        monkeypatch.setattr(backend.search, "by_video", boom)
        for method, url, options, code in bad:
            response = client.request(method, url, **options)
            assert response.status_code == code, (method, url, response.text)
            assert "detail" in response.json()
            good = client.get("/healthz")
            assert good.status_code == 200
            assert _local_port(response) == _local_port(good) == port, f"{method} {url} lost the connection"
