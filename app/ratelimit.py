"""Per-key rate limits (the `limits` library, moving window), answered with 429 and Retry-After.

Each key has one budget per route scope (HAPVR_RATE_LIMIT_READ, _WRITE, _ADMIN), so a burst of
uploads does not use up a key's reads. Requests with a wrong key are counted per client address
(HAPVR_RATE_LIMIT_AUTH_FAILURES): each costs an argon2 verification, and the limit stops both
guessing and burning CPU. Counts live in memory in the embedded mode and in Redis when deployed,
so API replicas share them.
"""

from __future__ import annotations

import math
import time

from fastapi import HTTPException, status
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from indexer.orm import Scope
from indexer.settings import Settings


def _storage(settings: Settings) -> Storage:
    if settings.deployed and settings.redis_url:
        # wrap_exceptions: a Redis outage surfaces as StorageError, answered with 503 below.
        return RedisStorage(settings.redis_url, key_prefix=f"{settings.redis_prefix}:limits", wrap_exceptions=True)
    return MemoryStorage()


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(_storage(settings))
        self._per_scope: dict[Scope, list[RateLimitItem]] = {
            Scope.read: parse_many(settings.rate_limit_read),
            Scope.write: parse_many(settings.rate_limit_write),
            Scope.admin: parse_many(settings.rate_limit_admin),
        }
        self._failures = parse_many(settings.rate_limit_auth_failures)

    def hit(self, key_id: int, scope: Scope) -> None:
        """Count one request of a key to a route of `scope`; 429 once over its limit."""
        self._hit(self._per_scope[scope], "key", str(key_id), scope.value)

    def check_failures(self, client: str) -> None:
        """429 if this client address has sent too many wrong keys (checked before any hashing)."""
        try:
            for item in self._failures:
                if not self._limiter.test(item, "auth-failure", client):
                    raise self._too_many(item, ("auth-failure", client), "too many requests with a wrong API key")
        except StorageError as error:
            raise _storage_down(error) from None

    def count_failure(self, client: str) -> None:
        self._hit(self._failures, "auth-failure", client)

    def _hit(self, items: list[RateLimitItem], *identifiers: str) -> None:
        try:
            for item in items:
                if not self._limiter.hit(item, *identifiers):
                    raise self._too_many(item, identifiers, f"rate limit of {item} exceeded")
        except StorageError as error:
            raise _storage_down(error) from None

    def _too_many(self, item: RateLimitItem, identifiers: tuple[str, ...], message: str) -> HTTPException:
        reset = self._limiter.get_window_stats(item, *identifiers).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{message}; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def _storage_down(error: StorageError) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"rate limit storage unavailable ({type(error.storage_error).__name__}); retry shortly",
        headers={"Retry-After": "5"},
    )
