"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.app.fuzz_hooks): real videos for the file parts.

JSON Schema cannot say "a decodable video", so without this every generated upload would be
random bytes and refused with 422; with it, the fuzzer's uploads are accepted and indexed, and
its titles, external ids and metadata reach both catalogs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import strategies as st

from tests.app.apptools import Media


def _videos() -> list[bytes]:
    with tempfile.TemporaryDirectory() as folder:
        media = Media(Path(folder))
        return [media.video(f"v{seed}.mp4", seed=seed, seconds=2).read_bytes() for seed in range(4)]


VIDEOS = st.sampled_from(_videos())
TEXT_FIELDS = ("title", "external_id")
# The file parts declare video types (drawn from the media type strategy) and are binary strings
# (drawn from the format strategy in the stateful phase): both give real videos.
schemathesis.openapi.media_type("video/mp4", VIDEOS)
schemathesis.openapi.format("binary", VIDEOS)


@schemathesis.hook
def filter_body(ctx: schemathesis.HookContext, body: object) -> bool:
    """Leave out forms whose refusal cannot be observed on the wire: a text field that is not text
    (false, 5, null) is sent as its text, which is a valid title; a field of [] or {} is not sent
    at all. Schemathesis would judge both by the generated value, because it cannot re-read a form
    with a file part as sent (its validator takes no bytes), and report the server for accepting
    a request that is valid as received. Refusable values (too long, control characters, metadata
    that is not an object, NaN-free numbers out of range, ...) are still generated."""
    if not isinstance(body, dict):
        return True
    for name, value in body.items():
        if name in TEXT_FIELDS and not isinstance(value, str):
            return False
        if name != "file" and value in ([], {}):
            return False
    return True
