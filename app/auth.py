"""API keys on every route that touches the library: who is calling, with which scope, how often.

A route declares the scope it needs with `dependencies=[RequireRead]` (app/deps.py). When keys
are required (Settings.auth_required), a request without a key, or with an unknown or revoked
one, gets 401 with `WWW-Authenticate`; a key of a lower scope gets 403; a key over its rate
limit gets 429 with `Retry-After`. /healthz, /readyz and /metrics declare no scope and stay open.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session, sessionmaker

from app.ratelimit import RateLimits
from indexer import api_keys
from indexer.api_keys import KeyInfo
from indexer.db import session_scope
from indexer.orm import Scope
from indexer.settings import LOOPBACK_HOSTS, Settings

log = logging.getLogger("hapvr.auth")

API_KEY_HEADER = "X-API-Key"
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


def presented_key(request: Request) -> str | None:
    """The key of `Authorization: Bearer KEY`, else of `X-API-Key: KEY`; None when neither is sent."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get(API_KEY_HEADER, "").strip() or None


class ScopeCheck:
    """A route dependency: the request must carry an active key of at least `scope`."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    # A plain def: FastAPI runs it in the thread pool, where the catalog read and argon2 belong.
    def __call__(self, request: Request) -> KeyInfo | None:
        auth: Authenticator = request.app.state.auth
        if not auth.required:
            return None
        key = presented_key(request)
        if key is None:
            raise unauthorized("an API key is required")
        info = auth.identify(key, request.client.host if request.client else "unknown")
        if not info.scope.allows(self.scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this API key has scope {info.scope.value}; {request.method} {request.url.path} needs {self.scope.value}",
                headers={
                    "WWW-Authenticate": f'Bearer realm="hapvr", error="insufficient_scope", scope="{self.scope.value}"'
                },
            )
        assert auth.limits is not None
        auth.limits.hit(info.id, self.scope)
        return info


def route_scope(route: APIRoute) -> Scope | None:
    """The scope a route requires, None for an open one."""
    for dependency in route.dependencies:
        if isinstance(dependency.dependency, ScopeCheck):
            return dependency.dependency.scope
    return None


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

_SCHEMES: dict[str, Any] = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
}
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


def document_security(app: FastAPI) -> None:
    """Declare the key schemes and 401/403/429 in OpenAPI, only when keys are required (with
    keys off the schema promises no authentication, so clients and fuzzers see the truth)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = _SCHEMES
            for route in app.routes:
                if not isinstance(route, APIRoute) or (scope := route_scope(route)) is None:
                    continue
                for method in route.methods or ():
                    operation = schema["paths"].get(route.path_format, {}).get(method.lower())
                    if operation is None:  # a route left out of the schema
                        continue
                    operation["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
                    operation["description"] = (
                        f"{operation.get('description', '')}\n\nNeeds a key of scope `{scope.value}`.".strip()
                    )
                    operation.setdefault("responses", {}).update(_AUTH_RESPONSES)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
