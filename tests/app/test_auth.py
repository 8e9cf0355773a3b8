"""API keys on the embedded service (SQLite catalog): scopes per route, revocation, hashing at
rest, the admin key at start, and the default of HAPVR_AUTH."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from indexer.orm import Scope
from indexer.settings import Settings
from tests.app.apptools import AppClient, Media, wait_until
from tests.app.authtools import bearer, make_key

SCOPES = ("read", "write", "admin")

# Every route of the API and the scope it needs; None: open to anyone.
ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/videos"): "read",
    ("GET", "/videos/{video_id}"): "read",
    ("GET", "/search"): "read",
    ("GET", "/videos/{video_id}/thumbnail"): "read",
    ("GET", "/videos/{video_id}/strip"): "read",
    ("GET", "/videos/{video_id}/file"): "read",
    ("GET", "/duplicates"): "read",
    ("PATCH", "/videos/{video_id}"): "write",
    ("POST", "/videos"): "write",
    ("POST", "/search"): "write",
    ("DELETE", "/videos/{video_id}"): "admin",
    ("POST", "/videos/{video_id}/reindex"): "admin",
    ("POST", "/keys"): "admin",
    ("GET", "/keys"): "admin",
    ("DELETE", "/keys/{key_id}"): "admin",
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
}


@pytest.fixture
def secured(service_factory) -> Callable[..., AppClient]:  # type: ignore[no-untyped-def]
    """Start embedded services with keys required (loopback, so only because they are asked for)."""

    def start(**overrides: Any) -> AppClient:
        return service_factory(**{"auth": "required", **overrides})

    return start


def upload(service: AppClient, path: Path, key: str) -> int:
    files = {"file": (path.name, path.read_bytes(), "video/mp4")}
    response = service.client.post("/videos", files=files, headers=bearer(key))
    assert response.status_code in (200, 202), response.text
    return int(response.json()["id"])


def wait_ready(service: AppClient, video_id: int, key: str) -> None:
    def ready() -> bool:
        status = service.client.get(f"/videos/{video_id}", headers=bearer(key)).json()["status"]
        assert status != "failed"
        return bool(status == "ready")

    wait_until(ready, timeout=60)


def declared_scopes(schema: dict[str, Any]) -> dict[tuple[str, str], str | None]:
    """(method, path) -> the scope its OpenAPI security requirement names, None if it has none."""
    declared: dict[tuple[str, str], str | None] = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            requirements = operation.get("security")
            if requirements is None:
                declared[(method.upper(), path)] = None
                continue
            assert requirements == [
                {"bearerAuth": requirements[0]["bearerAuth"]},
                {"apiKeyHeader": requirements[0]["bearerAuth"]},
            ]
            (scope,) = requirements[0]["bearerAuth"]
            declared[(method.upper(), path)] = scope
    return declared


def test_every_route_declares_its_scope(secured) -> None:  # type: ignore[no-untyped-def]
    """A new route cannot slip in without a scope: the table above must list it."""
    schema = secured().client.get("/openapi.json").json()
    assert declared_scopes(schema) == ROUTE_SCOPES
    assert set(schema["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}
    for (method, path), scope in ROUTE_SCOPES.items():
        responses = schema["paths"][path][method.lower()]["responses"]
        assert ({"401", "403", "429"} <= set(responses)) is (scope is not None), (method, path)


def test_each_route_answers_401_403_or_succeeds_by_scope(secured, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = secured()
    keys = {scope: make_key(service, scope, f"{scope} key") for scope in SCOPES}
    video_id = upload(service, media.video("a.mp4", seed=1), keys["write"])
    wait_ready(service, video_id, keys["read"])
    spare_key_id = service.client.get("/keys", headers=bearer(keys["admin"])).json()["data"][0]["id"]
    clip = ("clip.mp4", media.video("clip.mp4", seed=1).read_bytes(), "video/mp4")
    new_video = ("b.mp4", media.video("b.mp4", seed=2).read_bytes(), "video/mp4")
    calls: list[tuple[str, str, str, dict[str, Any], set[int]]] = [
        ("GET", "/videos", "read", {}, {200}),
        ("GET", f"/videos/{video_id}", "read", {}, {200}),
        ("GET", "/search", "read", {"params": {"video_id": video_id}}, {200}),
        ("GET", f"/videos/{video_id}/thumbnail", "read", {}, {200}),
        ("GET", f"/videos/{video_id}/strip", "read", {}, {200}),
        ("GET", f"/videos/{video_id}/file", "read", {}, {200}),
        ("GET", "/duplicates", "read", {}, {200}),
        ("PATCH", f"/videos/{video_id}", "write", {"json": {"title": "renamed"}}, {200}),
        ("POST", "/videos", "write", {"files": {"file": new_video}}, {200, 202}),
        ("POST", "/search", "write", {"files": {"file": clip}}, {200}),
        ("GET", "/keys", "admin", {}, {200}),
        ("POST", "/keys", "admin", {"json": {"scope": "read", "name": "made over HTTP"}}, {201}),
        ("DELETE", f"/keys/{spare_key_id}", "admin", {}, {204}),
        ("POST", f"/videos/{video_id}/reindex", "admin", {}, {202, 409}),  # 409 once it is queued again
        ("DELETE", f"/videos/{video_id}", "admin", {}, {204}),  # last: the video is gone after it
    ]
    assert {(method, _template(path)) for method, path, *_ in calls} == {
        route for route, scope in ROUTE_SCOPES.items() if scope is not None
    }
    for method, path, needed, kwargs, success in calls:
        anonymous = service.client.request(method, path, **kwargs)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "API key is required" in anonymous.json()["detail"]
        for scope in SCOPES:
            response = service.client.request(method, path, headers=bearer(keys[scope]), **kwargs)
            if Scope(scope).allows(Scope(needed)):
                assert response.status_code in success, (method, path, scope, response.text)
            else:
                assert response.status_code == 403, (method, path, scope, response.text)
                assert f"needs {needed}" in response.json()["detail"]
                assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert service.client.get(path).status_code == 200, path


def _template(path: str) -> str:
    return re.sub(r"/videos/\d+", "/videos/{video_id}", re.sub(r"/keys/\d+", "/keys/{key_id}", path))


def test_key_is_read_from_bearer_or_x_api_key(secured) -> None:  # type: ignore[no-untyped-def]
    service = secured()
    key = make_key(service, "read")
    assert service.client.get("/videos", headers={"Authorization": f"bearer {key}"}).status_code == 200
    assert service.client.get("/videos", headers={"X-API-Key": key}).status_code == 200
    assert service.client.get("/videos", headers={"Authorization": f"Basic {key}"}).status_code == 401
    unknown = service.client.get("/videos", headers=bearer("hapvr_0123456789ab_" + "x" * 43))
    assert unknown.status_code == 401 and "unknown API key" in unknown.json()["detail"]
    assert service.client.get("/videos", headers=bearer(key[:-1] + ("A" if key[-1] != "A" else "B"))).status_code == 401


def test_revoked_key_is_refused_at_once(secured) -> None:  # type: ignore[no-untyped-def]
    service = secured()
    admin, reader = make_key(service, "admin"), make_key(service, "read")
    assert service.client.get("/videos", headers=bearer(reader)).status_code == 200  # now verified and remembered
    listed = service.client.get("/keys", headers=bearer(admin)).json()["data"]
    reader_id = next(key["id"] for key in listed if key["scope"] == "read")
    assert service.client.delete(f"/keys/{reader_id}", headers=bearer(admin)).status_code == 204
    refused = service.client.get("/videos", headers=bearer(reader))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert service.client.delete(f"/keys/{reader_id}", headers=bearer(admin)).status_code == 204  # idempotent
    assert service.client.delete("/keys/999999", headers=bearer(admin)).status_code == 404
    listed = {key["id"]: key for key in service.client.get("/keys", headers=bearer(admin)).json()["data"]}
    assert listed[reader_id]["revoked_at"] is not None


def test_keys_are_hashed_at_rest(secured) -> None:  # type: ignore[no-untyped-def]
    service = secured()
    admin = make_key(service, "admin")
    created = service.client.post("/keys", json={"scope": "write", "name": "ingest"}, headers=bearer(admin))
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert key.startswith(f"hapvr_{body['prefix']}_") and body["scope"] == "write" and body["name"] == "ingest"
    assert service.client.get("/videos", headers=bearer(key)).status_code == 200
    listing = service.client.get("/keys", headers=bearer(admin))
    assert key not in listing.text and "key_hash" not in listing.text
    secret = key.split("_", 2)[2]
    catalog_files = list(service.backend.settings.data_dir.glob("catalog.sqlite3*"))
    assert catalog_files
    for path in catalog_files:  # the database and its write-ahead log, byte for byte
        data = path.read_bytes()
        assert key.encode() not in data and secret.encode() not in data, path
        assert admin.encode() not in data and admin.split("_", 2)[2].encode() not in data, path
    with service.backend.engine.connect() as connection:
        hashes = [row[0] for row in connection.exec_driver_sql("SELECT key_hash FROM api_keys")]
    assert len(hashes) == 3 and all(value.startswith("$argon2id$") for value in hashes)  # with the first admin key


def test_key_names_are_checked(secured) -> None:  # type: ignore[no-untyped-def]
    service = secured()
    admin = bearer(make_key(service, "admin"))
    for body in ({"scope": "root"}, {"scope": "read", "name": "a\x00b"}, {"scope": "read", "name": "x" * 201}, {}):
        assert service.client.post("/keys", json=body, headers=admin).status_code == 422, body
    lone_surrogate = b'{"scope": "read", "name": "a\\ud800b"}'  # valid JSON, not valid text
    response = service.client.post(
        "/keys", content=lone_surrogate, headers={**admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert service.client.delete("/keys/0", headers=admin).status_code == 422
    assert service.client.delete(f"/keys/{2**31}", headers=admin).status_code == 422


def test_admin_key_from_the_environment_is_stored_once(secured, settings_factory) -> None:  # type: ignore[no-untyped-def]
    admin_key = "4f" * 8 + "0123456789abcdef" * 3  # 64 characters, as `openssl rand -hex 32` gives
    first = secured(admin_key=admin_key)
    listed = first.client.get("/keys", headers=bearer(admin_key))
    assert listed.status_code == 200, listed.text
    assert [(key["name"], key["scope"], key["prefix"]) for key in listed.json()["data"]] == [
        ("HAPVR_ADMIN_KEY", "admin", None)
    ]
    first.stop()
    again = secured(admin_key=admin_key)  # a restart finds it: no second row
    assert again.client.get("/keys", headers={"X-API-Key": admin_key}).json()["count"] == 1


@pytest.mark.parametrize(
    "placeholder",
    ["changeme", "change-me-change-me-change-me-change-me", "x" * 40, "your-admin-key-goes-here-0123456789", "short1"],
)
def test_placeholder_or_short_admin_keys_are_refused(placeholder: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(admin_key=placeholder)
    assert placeholder not in str(refused.value)  # the message never repeats the key


def test_first_admin_key_is_made_and_logged_once(secured, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="hapvr.auth"):
        service = secured()
    logged = re.findall(r"store it now: (\S+)", caplog.text)
    assert len(logged) == 1
    listed = service.client.get("/keys", headers=bearer(logged[0]))
    assert listed.status_code == 200 and listed.json()["count"] == 1
    service.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hapvr.auth"):
        secured()
    assert "store it now" not in caplog.text  # an admin key exists: nothing new is made


def test_embedded_loopback_default_needs_no_key(service: AppClient) -> None:
    assert not service.backend.settings.auth_required
    assert service.client.get("/videos").status_code == 200
    assert service.client.get("/keys").status_code == 200
    schema = service.client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})  # the schema promises no authentication
    assert set(declared_scopes(schema).values()) == {None}
    assert "401" not in schema["paths"]["/videos"]["get"]["responses"]


@pytest.mark.parametrize(
    ("values", "required"),
    [
        ({}, False),
        ({"host": "localhost"}, False),
        ({"host": "::1"}, False),
        ({"host": "0.0.0.0"}, True),
        ({"host": "192.168.1.20"}, True),
        ({"redis_url": "redis://127.0.0.1:6379/0", "database_url": "sqlite:///x.db"}, True),
        ({"host": "0.0.0.0", "auth": "off"}, False),
        ({"redis_url": "redis://127.0.0.1:6379/0", "auth": "off"}, False),
        ({"auth": "required"}, True),
    ],
)
def test_auth_default_depends_on_mode_and_host(values: dict[str, str], required: bool) -> None:
    assert Settings(**values).auth_required is required


def test_auth_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAPVR_AUTH", "required")
    monkeypatch.setenv("HAPVR_CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings()
    assert settings.auth_required and settings.cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("HAPVR_AUTH", "maybe")
    with pytest.raises(ValidationError):
        Settings()
    with pytest.raises(ValidationError):
        Settings(rate_limit_read="lots")
