"""Expected failures of the back end, each with the HTTP status the API answers them with.

They carry plain status numbers so the back end never imports the web framework; app/errors.py
turns them into JSON responses.
"""

from __future__ import annotations

from http import HTTPStatus


class ServiceError(Exception):
    """An expected failure with an HTTP status and a message for the client."""

    status_code = HTTPStatus.BAD_REQUEST

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
