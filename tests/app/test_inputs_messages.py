"""No public message names a server path: clients learn which file, never where it is kept."""

from __future__ import annotations

import shutil

import pytest

from indexer import catalog
from indexer.db import session_scope
from indexer.errors import public_message
from tests.app.apptools import Media


@pytest.mark.parametrize(
    ("text", "public"),
    [
        (
            "[Errno 2] No such file or directory: '/var/lib/hapvr/models/first/last.safetensors'",
            "[Errno 2] No such file or directory: 'last.safetensors'",
        ),
        (
            "[Errno 28] No space left on device: /srv/data/tmp/upload-x1",
            "[Errno 28] No space left on device: upload-x1",
        ),
        ("cannot read /a/b/ (a folder)", "cannot read b (a folder)"),
        ("send multipart/form-data, video/mp4 or application/octet-stream", None),
        ("see http://127.0.0.1:8000/videos/1 and ./relative/path and ~/.cache/hapvr", None),
        ("video 12 not found", None),
    ],
)
def test_public_message_cuts_absolute_paths_to_their_last_part(text: str, public: str | None) -> None:
    assert public_message(text) == (text if public is None else public)


def test_failure_reasons_are_served_without_paths(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(workers=0)
    video_id = service.upload(media.video("a.mp4", seed=1, seconds=1)).json()["id"]
    stored = service.backend.uploads.path_for(service.client.get(f"/videos/{video_id}").json()["sha256"], ".mp4")
    # What an indexing job records when the OS fails it: the exception names the file by its path.
    with session_scope(service.backend.sessions) as session:
        assert catalog.claim(video_id, session=session)
        assert catalog.mark_failed(
            video_id, f"internal error while indexing: OSError: [Errno 5] {stored}", session=session
        )
    for video in (service.client.get(f"/videos/{video_id}").json(), service.client.get("/videos").json()["data"][0]):
        assert video["failure_reason"] == f"internal error while indexing: OSError: [Errno 5] {stored.name}"
    assert str(service.backend.settings.data_dir) not in service.client.get("/videos").text


def test_a_broken_upload_store_answers_without_its_path(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(workers=0)
    scratch = service.backend.settings.tmp_dir
    shutil.rmtree(scratch)
    scratch.write_text("not a folder")  # the scratch folder cannot be created: every upload fails
    response = service.upload(media.video("a.mp4", seed=1, seconds=1))
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error; the failure was logged"}
    scratch.unlink()
    assert service.upload(media.video("a.mp4", seed=1, seconds=1)).status_code == 202
