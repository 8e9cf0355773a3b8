"""Streaming multipart reception of video uploads.

The request body goes straight from the socket to a scratch file beside the upload store,
hashed on the way, with the size limit enforced while the bytes arrive: an oversized upload is
cut off with 413 as soon as it passes the limit, never spooled whole first (which is what the
framework's own form parsing would do).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import IO

import anyio
from fastapi import HTTPException, Request, status
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from indexer.upload_store import ReceivedFile, UploadStore

# Room allowed for multipart boundaries and part headers on top of the file and the fields.
_ENVELOPE_BYTES = 64 * 1024

# Declared types that are certainly not a video; anything else (video/*, application/octet-stream,
# container types such as application/mp4 or application/x-matroska, nothing at all) is judged by
# decoding the bytes.
_NOT_VIDEO_MAJOR = {"text", "image", "audio", "font", "model", "message", "multipart"}
_NOT_VIDEO_APPLICATION = {
    "json",
    "xml",
    "pdf",
    "zip",
    "gzip",
    "x-gzip",
    "x-tar",
    "x-7z-compressed",
    "x-rar-compressed",
    "javascript",
    "x-javascript",
    "x-www-form-urlencoded",
    "msword",
    "rtf",
    "x-sh",
    "x-python",
    "vnd.ms-excel",
    "vnd.ms-powerpoint",
    "x-executable",
    "x-msdownload",
    "wasm",
    "yaml",
    "toml",
}


def is_clearly_not_video(content_type: str | None) -> bool:
    """True for declared types such as text/plain or image/png; unknown types get the benefit of doubt."""
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    major, _, minor = mime.partition("/")
    if major in _NOT_VIDEO_MAJOR:
        return True
    if major == "application":
        return minor in _NOT_VIDEO_APPLICATION or minor.endswith(("+json", "+xml", "+zip"))
    return False


@dataclass
class ReceivedForm:
    file: ReceivedFile
    fields: dict[str, str] = field(default_factory=dict)


def _error(code: int, detail: str) -> HTTPException:
    return HTTPException(status_code=code, detail=detail)


class _FormCollector:
    """python-multipart callbacks that stream the file part and keep small text fields."""

    def __init__(
        self,
        *,
        store: UploadStore,
        file_field: str,
        text_fields: frozenset[str],
        max_file_bytes: int,
        max_field_bytes: int,
    ) -> None:
        self.store = store
        self.file_field = file_field
        self.text_fields = text_fields
        self.max_file_bytes = max_file_bytes
        self.max_field_bytes = max_field_bytes

        self.fields: dict[str, str] = {}
        self.file: ReceivedFile | None = None
        self.handle: IO[bytes] | None = None
        self.hasher = hashlib.sha256()
        self.pending: list[bytes] = []  # file bytes parsed but not yet written

        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._is_file = False
        self._data = bytearray()
        self.ended = False

    # -- python-multipart callbacks (synchronous; file writes happen in `flush`) --
    def on_part_begin(self) -> None:
        self._headers = {}
        self._name = ""
        self._is_file = False
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _error(status.HTTP_400_BAD_REQUEST, "a multipart part has no field name")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == self.file_field:
            if self.file is not None:
                raise _error(422, f"send one file in the '{self.file_field}' field, not several")
            filename = options.get(b"filename")
            content_type = self._headers.get(b"content-type", b"").decode("latin-1").strip() or None
            if is_clearly_not_video(content_type):
                raise _error(
                    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                    f"'{self.file_field}' is declared as {content_type}, which is not a video; "
                    "send a video file (or application/octet-stream to let the service judge it)",
                )
            self._is_file = True
            path = self.store.scratch_file()
            self.handle = open(path, "wb")  # noqa: SIM115 - closed in finish() or discard()
            self.file = ReceivedFile(
                path=path,
                sha256="",
                size=0,
                filename=filename.decode("utf-8", "replace") if filename else None,
                content_type=content_type,
            )
        elif self._name not in self.text_fields:
            allowed = ", ".join(sorted({self.file_field, *self.text_fields}))
            raise _error(422, f"unexpected form field '{self._name}'; fields accepted: {allowed}")
        elif b"filename" in options:
            raise _error(422, f"form field '{self._name}' must be text, not a file")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            assert self.file is not None
            self.file.size += len(chunk)
            if self.file.size > self.max_file_bytes:
                raise _error(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"upload exceeds the limit of {self.max_file_bytes} bytes",
                )
            self.hasher.update(chunk)
            self.pending.append(chunk)
        else:
            self._data += chunk
            if len(self._data) > self.max_field_bytes:
                raise _error(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"form field '{self._name}' exceeds {self.max_field_bytes} bytes",
                )

    def on_part_end(self) -> None:
        if self._is_file:
            return
        try:
            self.fields[self._name] = self._data.decode("utf-8")
        except UnicodeDecodeError:
            raise _error(422, f"form field '{self._name}' is not UTF-8 text") from None

    def on_end(self) -> None:
        self.ended = True

    # -- file handling, called from the async side --
    def flush(self) -> None:
        if self.pending and self.handle is not None:
            self.handle.write(b"".join(self.pending))
        self.pending.clear()

    def finish(self) -> None:
        self.flush()
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.file is not None:
            self.file.sha256 = self.hasher.hexdigest()

    def discard(self) -> None:
        self.pending.clear()
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.file is not None:
            self.file.discard()


async def receive_video_form(
    request: Request,
    *,
    store: UploadStore,
    max_file_bytes: int,
    max_field_bytes: int,
    text_fields: frozenset[str] = frozenset(),
    file_field: str = "file",
) -> ReceivedForm:
    """Parse a multipart/form-data request whose `file_field` holds a video.

    Raises HTTPException: 413 past the limits, 415 for a non-multipart body or a declared
    non-video type, 400/422 for malformed or incomplete forms (including an empty file).
    """
    content_type = request.headers.get("content-type", "")
    mime, params = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        raise _error(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send multipart/form-data with the video in the '{file_field}' field",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise _error(status.HTTP_400_BAD_REQUEST, "multipart body without a boundary")

    declared = request.headers.get("content-length")
    budget = max_file_bytes + max_field_bytes * len(text_fields) + _ENVELOPE_BYTES
    if declared is not None and declared.isdigit() and int(declared) > budget:
        raise _error(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"upload exceeds the limit of {max_file_bytes} bytes",
        )

    collector = _FormCollector(
        store=store,
        file_field=file_field,
        text_fields=text_fields,
        max_file_bytes=max_file_bytes,
        max_field_bytes=max_field_bytes,
    )
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_end": collector.on_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if collector.pending:
                await anyio.to_thread.run_sync(collector.flush)
        parser.finalize()
        await anyio.to_thread.run_sync(collector.finish)
    except FormParserError:
        collector.discard()
        raise _error(status.HTTP_400_BAD_REQUEST, "malformed multipart body") from None
    except BaseException:
        collector.discard()
        raise

    if not collector.ended:
        collector.discard()
        raise _error(status.HTTP_400_BAD_REQUEST, "multipart body ended before its closing boundary")
    if collector.file is None:
        raise _error(422, f"form field '{file_field}' (the video file) is required")
    if collector.file.size == 0:
        collector.discard()
        raise _error(status.HTTP_400_BAD_REQUEST, "the uploaded file is empty")
    return ReceivedForm(file=collector.file, fields=collector.fields)
