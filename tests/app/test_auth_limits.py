"""Per-key rate limits (429 with Retry-After, then recovery) and CORS, on the embedded service."""

from __future__ import annotations

import time

from tests.app.apptools import AppClient, wait_until
from tests.app.authtools import bearer, make_key

WINDOW_S = 2


def assert_limited(response) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= WINDOW_S
    assert "retry in" in response.json()["detail"]
    return retry_after


def test_a_key_over_its_limit_gets_429_then_recovers(service_factory) -> None:  # type: ignore[no-untyped-def]
    service: AppClient = service_factory(
        auth="required", rate_limit_read=f"3/{WINDOW_S} seconds", rate_limit_admin=f"2/{WINDOW_S} seconds"
    )
    first, second = make_key(service, "admin"), make_key(service, "read")
    for _ in range(3):
        assert service.client.get("/videos", headers=bearer(first)).status_code == 200
    retry_after = assert_limited(service.client.get("/videos", headers=bearer(first)))
    # Per key: another key still reads; per scope: the same key still has its admin budget.
    assert service.client.get("/videos", headers=bearer(second)).status_code == 200
    assert service.client.get("/keys", headers=bearer(first)).status_code == 200

    time.sleep(retry_after)
    wait_until(lambda: service.client.get("/videos", headers=bearer(first)).status_code == 200, timeout=WINDOW_S * 3)


def test_a_client_sending_wrong_keys_is_slowed(service_factory) -> None:  # type: ignore[no-untyped-def]
    service: AppClient = service_factory(auth="required", rate_limit_auth_failures=f"2/{WINDOW_S} seconds")
    good = make_key(service, "read")
    assert service.client.get("/videos", headers=bearer(good)).status_code == 200  # verified before the flood
    for attempt in range(2):
        assert service.client.get("/videos", headers=bearer(f"wrong-key-{attempt}-" + "z" * 30)).status_code == 401
    limited = service.client.get("/videos", headers=bearer("wrong-key-again-" + "z" * 30))
    retry_after = assert_limited(limited)
    assert "wrong API key" in limited.json()["detail"]
    # A key this process already verified costs no hashing, so it is not held up.
    assert service.client.get("/videos", headers=bearer(good)).status_code == 200
    time.sleep(retry_after)
    wait_until(lambda: service.client.get("/videos", headers=bearer("x" * 40)).status_code == 401, timeout=WINDOW_S * 3)


def test_cors_preflight_allows_only_the_configured_origins(service_factory) -> None:  # type: ignore[no-untyped-def]
    service: AppClient = service_factory(auth="required", cors_origins=["https://app.example"])
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = service.client.options("/videos", headers={"Origin": "https://app.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "DELETE" in allowed.headers["access-control-allow-methods"]

    denied = service.client.options("/videos", headers={"Origin": "https://evil.example", **preflight})
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers

    # Errors carry the headers too, so a browser page can read why it was refused.
    refused = service.client.get("/videos", headers={"Origin": "https://app.example"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "https://app.example"
    assert "retry-after" in refused.headers["access-control-expose-headers"].lower()


def test_no_cors_origin_is_allowed_by_default(service: AppClient) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    response = service.client.options("/videos", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    assert (
        "access-control-allow-origin"
        not in service.client.get("/videos", headers={"Origin": "https://a.example"}).headers
    )
