"""Helpers of the API-key tests: keys stored straight into a running service's catalog."""

from __future__ import annotations

from indexer import api_keys
from indexer.db import session_scope
from indexer.orm import Scope
from tests.app.apptools import AppClient


def make_key(service: AppClient, scope: str, name: str | None = None) -> str:
    """A new key of `scope` in the service's catalog (what `hapvr keys create` does)."""
    with session_scope(service.backend.sessions) as session:
        return api_keys.create_key(Scope(scope), name, session=session).key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
