"""Back-pressure: a bounded number of searches run and wait; the rest get 503 with Retry-After at
once, while the admitted ones are answered. Bursts are real concurrent clients against a live
uvicorn server; a gate held by the test keeps the admitted searches busy for as long as it needs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.admission import Admission
from app.main import create_app
from indexer.errors import Busy
from indexer.graph_updater import THREAD_NAME as MATCH_GRAPH_THREAD
from indexer.settings import Settings
from tests.app.apptools import LightEmbedder, LightSearcher, Media, light_components, wait_until
from tests.app.live_server import LiveServer


def test_admission_bounds_running_and_waiting() -> None:
    async def scenario() -> None:
        admission = Admission("searches", running=1, waiting=1, retry_after_s=3)
        first, second = admission.reserve(), admission.reserve()
        with pytest.raises(Busy) as refused:
            admission.reserve()
        assert refused.value.retry_after_s == 3 and "1 running, 1 waiting" in refused.value.detail
        order: list[str] = []

        async def run(name: str, ticket) -> None:  # type: ignore[no-untyped-def]
            async with ticket:
                order.append(f"{name} in")
                await asyncio.sleep(0.05)
                order.append(f"{name} out")
            ticket.release()

        await asyncio.gather(run("first", first), run("second", second))
        assert order == ["first in", "first out", "second in", "second out"]  # one at a time
        admission.reserve().release()  # places come back
        assert admission.reserved == 0

    asyncio.run(scenario())


class Gate:
    """Holds the searches (or clip embeddings) that reach it until the test opens it."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.reached = 0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            self.reached += 1
        assert self.open.wait(60)


def gated_components(gate: Gate) -> Callable[[Settings], object]:
    """Light components whose searcher and clip embeddings stop at `gate` (indexing does not)."""

    class GatedSearcher(LightSearcher):
        def search(self, query, **kwargs):  # type: ignore[no-untyped-def]
            if threading.current_thread().name != MATCH_GRAPH_THREAD:  # users' searches only
                gate.wait()
            return super().search(query, **kwargs)

    class GatedEmbedder(LightEmbedder):
        def embed(self, path, *, max_frames=None):  # type: ignore[no-untyped-def]
            if max_frames is not None:  # a clip search, not an indexing job
                gate.wait()
            return super().embed(path, max_frames=max_frames)

    def factory(settings: Settings):  # type: ignore[no-untyped-def]
        components = light_components(settings)
        store = components.store
        components.make_searcher = lambda index: GatedSearcher(store, index)
        components.embedder = GatedEmbedder(settings)
        return components

    return factory


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open.set()  # never leave a server thread waiting


def _serve(settings: Settings, factory) -> LiveServer:  # type: ignore[no-untyped-def]
    app = create_app(settings, factory)
    server = LiveServer(app)
    server.app = app  # type: ignore[attr-defined]
    return server


def _ingest(client: httpx.Client, path: Path) -> int:
    with open(path, "rb") as handle:
        answer = client.post("/videos", files={"file": (path.name, handle, "video/mp4")})
    assert answer.status_code == 202, answer.text
    video_id = answer.json()["id"]
    wait_until(lambda: client.get(f"/videos/{video_id}").json()["status"] == "ready")
    return video_id


def _rejections(client: httpx.Client, route: str, status: str) -> float:
    wanted = f'hapvr_rejections_total{{route="{route}",status="{status}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_burst_of_searches_past_the_queue_gets_503_with_retry_after(
    settings_factory, media: Media, gate: Gate
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(search_threads=1, search_queue=2)
    with _serve(settings, gated_components(gate)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert server.app.state.backend.wait_ready(60)  # type: ignore[attr-defined]
        video_id = _ingest(client, media.video("a.mp4", seed=1))
        burst = 12
        with ThreadPoolExecutor(burst) as pool:
            # Each client its own connection, all at once.
            futures = [
                pool.submit(httpx.get, f"{server.url}/search", params={"video_id": video_id}, timeout=60)
                for _ in range(burst)
            ]
            wait_until(lambda: sum(f.done() for f in futures) == burst - 3)  # refusals come back at once
            assert gate.reached == 1  # one search runs, two wait their turn
            gate.open.set()
            answers = [future.result() for future in futures]
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] * 3 + [503] * (burst - 3)
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "1"
            assert "too many searches in progress" in answer.json()["detail"]
        else:
            assert answer.json()["data"] is not None
    assert gate.reached == 3


def test_clip_searches_are_capped_before_their_upload_and_counted(settings_factory, media: Media, gate: Gate) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(clip_searches=1, clip_queue=1)
    with _serve(settings, gated_components(gate)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert server.app.state.backend.wait_ready(60)  # type: ignore[attr-defined]
        _ingest(client, media.video("a.mp4", seed=1))
        clip = media.video("clip.mp4", seed=1, seconds=2).read_bytes()

        def search_clip() -> httpx.Response:
            return httpx.post(f"{server.url}/search", files={"file": ("clip.mp4", clip, "video/mp4")}, timeout=60)

        burst = 6
        with ThreadPoolExecutor(burst) as pool:
            futures = [pool.submit(search_clip) for _ in range(burst)]
            wait_until(lambda: sum(f.done() for f in futures) == burst - 2)
            assert gate.reached == 1  # one clip is embedded, one waits its turn
            gate.open.set()
            answers = [future.result() for future in futures]
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200, 200] + [503] * (burst - 2)
        refused = [answer for answer in answers if answer.status_code == 503]
        assert all(answer.headers["retry-after"] == "5" for answer in refused)
        assert all("too many clip searches" in answer.json()["detail"] for answer in refused)
        assert _rejections(client, "/search", "503") == burst - 2
        # Admitted places were all given back: a lone clip search goes through.
        assert search_clip().status_code == 200


def test_a_clip_over_the_frame_budget_is_422_before_decoding(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(max_clip_frames=5)
    service.ingest(media.video("a.mp4", seed=1))
    long_clip = media.video("long.mp4", seed=1, seconds=8, fps=2, size=(32, 32))
    with open(long_clip, "rb") as handle:
        answer = service.client.post("/search", files={"file": ("long.mp4", handle, "video/mp4")})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "clip cannot be used" in detail and "over the limit of 5" in detail
    short_clip = media.video("short.mp4", seed=1, seconds=4, fps=2, size=(32, 32))
    with open(short_clip, "rb") as handle:
        assert service.client.post("/search", files={"file": ("short.mp4", handle, "video/mp4")}).status_code == 200


def test_refusals_before_ready_and_by_cors_are_counted(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    def slow_factory(settings):  # type: ignore[no-untyped-def]
        assert release.wait(30)
        return light_components(settings)

    service = service_factory(factory=slow_factory, wait=False, cors_origins="https://ui.example.org")
    client = service.client
    try:
        assert service.upload(media.video("a.mp4", seed=1)).status_code == 503
        assert client.get("/readyz").status_code == 503
        assert client.get("/search", params={"video_id": 1}).status_code == 503
        preflight = client.options(
            "/videos", headers={"Origin": "https://elsewhere.example.org", "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 400
        metrics = client.get("/metrics").text
    finally:
        release.set()
    # The CORS layer refuses before any route is matched.
    for route, status in (("/videos", "503"), ("/readyz", "503"), ("/search", "503"), ("unmatched", "400")):
        assert f'hapvr_rejections_total{{route="{route}",status="{status}"}} 1.0' in metrics, (route, status)
