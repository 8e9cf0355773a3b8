"""Expected failures of the back end, each with the HTTP status the API answers them with.

They carry plain status numbers so the back end never imports the web framework; app/errors.py
turns them into JSON responses.
"""

from __future__ import annotations

import re
from http import HTTPStatus

# An absolute path of two or more parts: a slash that does not follow a word character, a dot, a
# slash, a colon or a tilde (so "multipart/form-data", "./x", "~/x" and URLs stay), then parts
# up to whitespace, quotes or punctuation that ends a path in a message.
_ABSOLUTE_PATH = re.compile(r"(?<![\w./:~])(?:/[^\s/'\"`,;:()\[\]{}<>]+){2,}/?")


def public_message(text: str) -> str:
    """`text` with every absolute path cut to its last part: clients learn which file, never
    where the server keeps it (the full message stays in the server's log)."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group().rstrip("/").rsplit("/", 1)[-1], text)


class ServiceError(Exception):
    """An expected failure with an HTTP status and a message for the client; `retry_after_s`,
    when set, is sent as Retry-After (the request may succeed later as it is)."""

    status_code = HTTPStatus.BAD_REQUEST
    retry_after_s: int | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    status_code = HTTPStatus.NOT_FOUND


class Conflict(ServiceError):
    status_code = HTTPStatus.CONFLICT


class Unprocessable(ServiceError):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


class NotReady(ServiceError):
    """The index is still loading (or failed to load): retry later."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    retry_after_s = 5


class Busy(ServiceError):
    """Too much work in progress to take this request now (app/admission.py)."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class IndexUnavailable(NotReady):
    """The vector index lives on a server (Milvus) that cannot be reached now: retry later."""
