"""The web UI in a real browser: Debian's chromium driven by Playwright against a real server.

Real clips and an edited copy are uploaded through the library page (plus a file the indexer
fails on and one over the size limit), then the video page must show the copy as its first
match with a matched range, the compare page must seek both players to a range, and the
duplicate groups must export. Each page is photographed; with HAPVR_SCREENSHOTS=docs/ui the
pictures land in the repository (they are the README's).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.main import create_app
from indexer.settings import Settings
from tests.app.apptools import Media, light_components
from tests.app.live_server import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
MAX_UPLOAD = 2 * 1024 * 1024
# Room for a video to be uploaded, indexed and searched on a 2-core machine under heavy load
# (15 s for the whole test on a quiet one; over 60 s seen while a benchmark retrained an index).
WAIT_MS = 180_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium package (apt-get install chromium)"
)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("HAPVR_SCREENSHOTS", tmp_path / "shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the test machines run as root, where chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def serve(settings: Settings) -> LiveServer:
    return LiveServer(create_app(settings, light_components))


def wait_for_statuses(page, count: int) -> None:  # type: ignore[no-untyped-def]
    """Until the list shows `count` videos, none of them still queued or processing."""
    page.wait_for_function(
        """count => {
            const rows = document.querySelectorAll('#videos tr[data-status]');
            return rows.length === count && [...rows].every(r => ['ready', 'failed'].includes(r.dataset.status));
        }""",
        arg=count,
        timeout=WAIT_MS,
    )


def open_video(page, title: str) -> None:  # type: ignore[no-untyped-def]
    page.locator("#videos a.title").get_by_text(title, exact=True).click()


def test_collection_through_the_browser(
    browser,  # type: ignore[no-untyped-def]
    settings_factory: Callable[..., Settings],
    source_clips: list[Path],
    edited_copy: Callable[..., Path],
    media: Media,
    shots: Path,
    tmp_path: Path,
) -> None:
    original, other = source_clips[0], source_clips[3]
    copy = tmp_path / f"copy of {original.stem}.mp4"
    shutil.copy(edited_copy("reencode", original), copy)
    broken = bytearray(media.video("damaged.avi", seed=5, codec="mjpeg").read_bytes())
    broken[4096:] = os.urandom(len(broken) - 4096)  # the header is intact: only indexing finds the damage
    damaged = media.raw("damaged.avi", bytes(broken))
    too_big = media.raw("too-big.mp4", os.urandom(MAX_UPLOAD + 1024 * 1024))

    with serve(settings_factory(max_upload_bytes=MAX_UPLOAD)) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        page.set_default_timeout(WAIT_MS)
        page.goto(server.url + "/")
        assert "The library is empty" in page.inner_text("#videos")
        page.screenshot(path=shots / "library-empty.png", full_page=True)

        # One video alone: its page has no match yet.
        page.set_input_files("#files", [str(other)])
        wait_for_statuses(page, 1)
        open_video(page, other.name)
        page.wait_for_selector("video#player")
        assert "No other video in the library shares footage" in page.inner_text("main")
        page.screenshot(path=shots / "video-no-matches.png", full_page=True)

        page.goto(server.url + "/")
        page.set_input_files("#files", [str(original), str(copy), str(damaged), str(too_big)])
        page.wait_for_selector(".upload.failed", timeout=WAIT_MS)
        wait_for_statuses(page, 4)
        uploads = page.inner_text("#uploads")
        assert "too large" in uploads or "cut off" in uploads, uploads
        failed = page.locator("#videos tr[data-status=failed]")
        assert failed.count() == 1 and failed.locator(".reason").inner_text().strip()
        assert page.locator("#videos tr[data-status=ready] img").count() == 3
        page.wait_for_function(
            "[...document.querySelectorAll('#videos img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        page.screenshot(path=shots / "library.png", full_page=True)

        # Filters narrow the list without a page load.
        page.fill("input[name=q]", "copy of")
        page.wait_for_function("document.querySelectorAll('#videos tr[data-status]').length === 1")
        page.select_option("select[name=status]", "failed")
        page.wait_for_function("document.querySelector('#videos .empty') !== null")
        page.goto(server.url + "/")

        # The original's page: the copy first, with its matched range drawn on both bars.
        open_video(page, original.name)
        first = page.locator("ol.matches > li").first
        first.wait_for(timeout=WAIT_MS)
        assert first.locator("a.title").inner_text() == copy.name
        assert first.locator("svg.timeline g.range").count() >= 1
        assert "here" in first.locator(".ranges").inner_text()
        page.fill("#details input[name=title]", "Harbour, take 2")
        page.fill("#details textarea[name=metadata]", '{"camera": "B"}')
        page.click("#details button[type=submit]")
        page.wait_for_selector("#details .ok")
        page.fill("#details textarea[name=metadata]", "[1, 2]")
        page.click("#details button[type=submit]")
        page.wait_for_selector("#details .alert")
        assert "metadata" in page.inner_text("#details .alert")
        page.reload()
        assert page.input_value("#details input[name=title]") == "Harbour, take 2"
        page.wait_for_function("document.getElementById('player').readyState >= 1")
        page.screenshot(path=shots / "video.png", full_page=True)

        # Compare: a range seeks both players (the file is served with HTTP Range, so they can).
        first.locator("a.button:has-text('Compare')").click()
        page.wait_for_selector("svg.heatmap")
        for player in ("player-1", "player-2"):
            page.wait_for_function(f"document.getElementById('{player}').readyState >= 1", timeout=WAIT_MS)
        button = page.locator(".ranges button.range").first
        wanted = (float(button.get_attribute("data-a")), float(button.get_attribute("data-b")))
        cell = page.locator("svg.heatmap rect.cell").nth(5)
        cell.click()
        at_cell = page.evaluate("[1, 2].map(n => document.getElementById('player-' + n).currentTime)")
        assert at_cell == pytest.approx(
            [float(cell.get_attribute("data-a")), float(cell.get_attribute("data-b"))], abs=0.05
        )
        button.click()
        seeked = page.evaluate("[1, 2].map(n => document.getElementById('player-' + n).currentTime)")
        assert seeked == pytest.approx(list(wanted), abs=0.05)
        page.screenshot(path=shots / "compare.png", full_page=True)

        # Duplicate groups at a score between the copy's and the unrelated clip's, then export.
        page.goto(server.url + "/ui/duplicates?min_score=0")
        page.wait_for_selector("section.group")
        best, second = match_scores(page, server.url, original_title="Harbour, take 2")[:2]
        page.goto(f"{server.url}/ui/duplicates?min_score={(best + second) / 2:.4f}")
        groups = page.locator("section.group")
        assert groups.count() == 1
        titles = groups.first.locator(".group-videos span").all_inner_texts()
        assert sorted(titles) == sorted(["Harbour, take 2", copy.name])
        page.screenshot(path=shots / "duplicates.png", full_page=True)
        with page.expect_download() as download:
            page.click("#export-csv")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert sorted(r["title"] or r["filename"] for r in rows) == sorted(["Harbour, take 2", copy.name])

        page.goto(f"{server.url}/ui/duplicates?min_score=0.9999")
        assert "No videos are connected" in page.inner_text("main")
        page.goto(server.url + "/ui/videos/999")
        assert "There is no video 999" in page.inner_text("main")
        page.screenshot(path=shots / "not-found.png", full_page=True)


def match_scores(page, url: str, *, original_title: str) -> list[float]:  # type: ignore[no-untyped-def]
    """The scores of the original's matches, best first, read from its page."""
    page.goto(url + "/")
    open_video(page, original_title)
    page.wait_for_selector("ol.matches")
    return [float(text) for text in page.locator("ol.matches > li .score").all_inner_texts()]


def test_pages_ask_for_a_key_once_when_keys_are_required(
    browser,  # type: ignore[no-untyped-def]
    settings_factory: Callable[..., Settings],
    source_clips: list[Path],
    shots: Path,
) -> None:
    admin = secrets.token_hex(24)
    settings = settings_factory(auth="required", admin_key=admin, host="127.0.0.1")
    with serve(settings) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 720})  # type: ignore[attr-defined]
        page.set_default_timeout(WAIT_MS)
        page.goto(server.url + "/ui/duplicates")
        assert page.url.startswith(server.url + "/login")
        page.fill("input[name=key]", "not-a-key-" + "x" * 30)
        page.click("form[action='/login'] button")
        assert "unknown API key" in page.inner_text(".alert")
        page.screenshot(path=shots / "login.png", full_page=True)
        page.fill("input[name=key]", admin)
        page.click("form[action='/login'] button")
        assert page.url == server.url + "/ui/duplicates"  # back where it was going
        page.goto(server.url + "/")
        page.set_input_files("#files", [str(source_clips[1])])  # the cookie's key uploads
        wait_for_statuses(page, 1)
        assert page.locator("#videos tr[data-status=ready] img").count() == 1
        cookie = next(c for c in page.context.cookies() if c["name"] == "hapvr_key")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        # Outside the page, the cookie alone does not write: a foreign form post is refused.
        response = page.request.delete(server.url + "/videos/1")
        assert response.status == 403
        page.click("text=Forget key")
        page.goto(server.url + "/")
        assert page.url.startswith(server.url + "/login")
