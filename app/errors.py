"""Service errors and the handlers that turn every failure into JSON with a `detail` message.

Every error answer is counted (`hapvr_rejections_total{route,status}`, by `RejectionCounter`,
the outermost layer, so refusals of the CORS layer count too), carries no absolute server
path, and leaves the client's keep-alive connection usable: an unexpected exception is
answered with a 500 here and not re-raised, because the server closes the connection of a
request whose exception reaches it even after the answer was sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from indexer.errors import ServiceError, public_message

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal server error; the failure was logged"
_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}


def describe_validation_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """pydantic's error list as one line for `detail`."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def validation_error_body(errors: Sequence[Any]) -> dict[str, Any]:
    """The 422 body of a request that failed validation (app.schemas.InvalidRequest)."""
    listed = jsonable_encoder(errors, exclude={"input", "ctx", "url"})
    return {"detail": public_message(describe_validation_errors(listed)), "errors": listed}


def allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """The methods the OpenAPI schema declares for this path (the router names only those of the
    first route that matched it); None for a path the schema does not describe."""
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return sorted(method.upper() for method in operations if method.upper() in _METHODS)
    return None


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(ErrorGuard)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, error: ServiceError) -> JSONResponse:
        headers = None if error.retry_after_s is None else {"Retry-After": str(error.retry_after_s)}
        return JSONResponse({"detail": public_message(error.detail)}, status_code=error.status_code, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = public_message(error.detail) if isinstance(error.detail, str) else jsonable_encoder(error.detail)
        headers = dict(error.headers or {})
        allowed = allowed_methods(app, request.url.path) if error.status_code == 405 else None
        if allowed:
            headers["Allow"] = ", ".join(allowed)
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_error_body(error.errors()), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def install_rejection_counter(app: FastAPI) -> None:
    """Count every error answer; call last, so that it wraps every other middleware."""
    app.add_middleware(RejectionCounter)


class RejectionCounter:
    """Counts every answer of 400 or more by route template and status, whichever layer made it
    (a route, a dependency such as auth or admission, the CORS layer, the 500 guard)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def watch(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                _count(scope, message["status"])
            await send(message)

        await self.app(scope, receive, watch)


class ErrorGuard:
    """Innermost of the middleware: turns an exception that escaped every handler into a logged
    500 without closing the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: ASGIMessage) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half an answer is out: only closing the connection can tell the client
            await JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)(scope, receive, watch)


def _count(scope: Scope, code: int) -> None:
    route = scope.get("route")
    backend = getattr(scope["app"].state, "backend", None) if "app" in scope else None
    if backend is not None:
        backend.metrics.rejections.labels(getattr(route, "path", "unmatched"), str(code)).inc()
