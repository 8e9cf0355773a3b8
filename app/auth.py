"""API keys on every route that touches the library: who is calling, with which scope, how often.

A route declares the scope it needs with `dependencies=[RequireRead]` (app/deps.py, built by
require_scope). When keys are required (Settings.auth_required), a request without a key, or
with an unknown or revoked one, gets 401 with `WWW-Authenticate`; a key of a lower scope gets
403; a key over its rate limit gets 429 with `Retry-After`. /healthz, /readyz and /metrics
declare no scope and stay open.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from app.ratelimit import RateLimits
from indexer import api_keys
from indexer.api_keys import KeyInfo
from indexer.db import session_scope
from indexer.orm import Scope
from indexer.settings import LOOPBACK_HOSTS, Settings

log = logging.getLogger("hapvr.auth")

API_KEY_HEADER = "X-API-Key"
# The web UI's cookie holding the key typed on its login page.
KEY_COOKIE = "hapvr_key"
# Keys verified by this process (sha256 of the key -> row id), so argon2 runs once per key, not
# once per request; the row is still read on every request, so a revocation applies at once.
VERIFIED_CACHE_SIZE = 4096


class Authenticator:
    """Resolves the key of a request; one per app, built from the settings."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.required = settings.auth_required
        self._sessions = sessions
        self.limits = RateLimits(settings) if self.required else None
        self._verified: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def identify(self, key: str, client: str) -> KeyInfo:
        """The active key `key` is, or 401 (429 for a client that keeps sending wrong keys)."""
        assert self.limits is not None
        digest = hashlib.sha256(key.encode()).digest()
        with self._lock:
            known = self._verified.get(digest)
            if known is not None:
                self._verified.move_to_end(digest)
        if known is not None:
            with session_scope(self._sessions) as session:
                info = api_keys.get_key(known, session=session)
            if info is not None and info.active:
                return info
            self._forget(digest)
            raise unauthorized("this API key was revoked")
        self.limits.check_failures(client)
        with session_scope(self._sessions) as session:
            info = api_keys.find_key(key, session=session)
        if info is None or not info.active:
            self.limits.count_failure(client)
            raise unauthorized("unknown API key" if info is None else "this API key was revoked")
        with self._lock:
            self._verified[digest] = info.id
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return info

    def _forget(self, digest: bytes) -> None:
        with self._lock:
            self._verified.pop(digest, None)


def unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        f"{message}; send Authorization: Bearer KEY or {API_KEY_HEADER}: KEY",
        headers={"WWW-Authenticate": 'Bearer realm="hapvr"'},
    )


_BEARER = HTTPBearer(auto_error=False, scheme_name="bearerAuth", description="Authorization: Bearer KEY")
_HEADER = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="apiKeyHeader", description="X-API-Key: KEY")


def cookie_key(request: Request) -> str:
    """The key the web UI keeps in a cookie (app.routes.ui); only for requests the page itself sends.

    A cookie rides along on any request the browser makes, including one a foreign page triggers,
    so for anything but a read it counts only with the `HX-Request` header the UI's own requests
    carry: a foreign page cannot add that header without a CORS preflight, which it does not pass.
    """
    key = request.cookies.get(KEY_COOKIE, "").strip()
    if key and request.method not in ("GET", "HEAD") and request.headers.get("HX-Request") != "true":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a key from the web UI's cookie is taken only from the UI")
    return key


def authorize(request: Request, key: str, scope: Scope) -> KeyInfo | None:
    """The active key `key`, if it has at least `scope` and is within its rate; 401, 403 or 429
    otherwise. None when keys are off."""
    auth: Authenticator = request.app.state.auth
    if not auth.required:
        return None
    if not key:
        raise unauthorized("an API key is required")
    info = auth.identify(key, request.client.host if request.client else "unknown")
    if not info.scope.allows(scope):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this API key has scope {info.scope.value}; {request.method} {request.url.path} needs {scope.value}",
            headers={"WWW-Authenticate": f'Bearer realm="hapvr", error="insufficient_scope", scope="{scope.value}"'},
        )
    assert auth.limits is not None
    auth.limits.hit(info.id, scope)
    return info


def require_scope(scope: Scope) -> Callable[..., KeyInfo | None]:
    """A route dependency: the request must carry an active key of at least `scope`.

    The key is read through FastAPI's security classes, so OpenAPI lists both ways to send it,
    with the scope, on every guarded operation (document_security drops them when keys are off).
    """

    # A plain def: FastAPI runs it in the thread pool, where the catalog read and argon2 belong.
    def check(
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Security(_BEARER, scopes=[scope.value]),
        header: str | None = Security(_HEADER, scopes=[scope.value]),
    ) -> KeyInfo | None:
        key = (bearer.credentials.strip() if bearer is not None else "") or (header or "").strip()
        if not key and request.app.state.auth.required:
            key = cookie_key(request)
        return authorize(request, key, scope)

    return check


def ensure_admin_key(settings: Settings, sessions: sessionmaker[Session]) -> None:
    """At start, when keys are required: store HAPVR_ADMIN_KEY, or make and log a first admin key."""
    if not settings.auth_required:
        if settings.host not in LOOPBACK_HOSTS:
            log.warning("HAPVR_AUTH=off on %s: anyone who can reach it may read, upload and delete", settings.host)
        return
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key is not None else None
    with session_scope(sessions) as session:
        created = api_keys.ensure_admin_key(admin_key, session=session)
    if created is not None:
        # The one place this key is ever shown: the operator reads it from the log.
        log.warning(
            "no admin API key existed, so key %d was made; it is shown only here, store it now: %s",
            created.info.id,
            created.key,
        )


# -- OpenAPI -------------------------------------------------------------------------------------

_MESSAGE: dict[str, Any] = {
    "application/json": {
        "schema": {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
    }
}
_AUTH_RESPONSES: dict[str, Any] = {
    "401": {"description": "no API key, or an unknown or revoked one", "content": _MESSAGE},
    "403": {"description": "the API key's scope is too low for this route", "content": _MESSAGE},
    "429": {
        "description": "over the key's rate limit (or too many wrong keys from this address)",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
        "content": _MESSAGE,
    },
}


def document_security(app: FastAPI, *, required: bool) -> None:
    """With keys required, add 401/403/429 to every guarded operation of the OpenAPI schema; with
    keys off, drop the key schemes, so the schema promises no authentication that is not asked
    for (clients and fuzzers see the truth)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI's, cached until the routes change; the edits below are idempotent
        if not required:
            schema.get("components", {}).pop("securitySchemes", None)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                if "security" not in operation:
                    continue
                if required:
                    operation.setdefault("responses", {}).update(_AUTH_RESPONSES)
                else:
                    del operation["security"]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
