"""What the OpenAPI schema promises is what the service does: bounds, error shapes, Allow
headers, documented statuses, counted refusals, and /docs served without a network."""

from __future__ import annotations

import re

import pytest

from app.schemas import MAX_ID, InvalidRequest, Message
from tests.app.apptools import AppClient, Media


def _schema(service: AppClient) -> dict:
    return service.client.get("/openapi.json").json()


def _metric(service: AppClient, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in service.client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_422_is_declared_and_answered_in_one_shape(service: AppClient, media: Media) -> None:
    schema = _schema(service)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if operation.get("parameters") or operation.get("requestBody"):
                declared = operation["responses"]["422"]["content"]["application/json"]["schema"]
                assert declared == {"$ref": "#/components/schemas/InvalidRequest"}, (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for response in (
        service.client.get("/videos/abc"),  # a parameter that does not parse
        service.client.get("/search", params={"video_id": 1, "k": 10**6}),  # a limit from the settings
        service.upload(media.video("a.mp4", seed=1, seconds=1), title="a\x00b"),  # a form field
        service.upload(media.raw("junk.mp4", b"junk" * 100)),  # content refused after parsing
    ):
        assert response.status_code == 422
        body = InvalidRequest.model_validate(response.json())
        assert body.detail and (body.errors is None or body.errors)


def test_k_is_bounded_by_the_setting_in_the_schema_and_the_service(service_factory) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(max_k=50)
    (k,) = [p for p in _schema(service)["paths"]["/search"]["get"]["parameters"] if p["name"] == "k"]
    (integer,) = [branch for branch in k["schema"]["anyOf"] if branch.get("type") == "integer"]
    assert integer["minimum"] == 1 and integer["maximum"] == 50
    assert service.client.get("/search", params={"video_id": 1, "k": 50}).status_code == 404  # accepted, no video
    refused = service.client.get("/search", params={"video_id": 1, "k": 51})
    assert refused.status_code == 422 and "at most 50" in refused.json()["detail"]


def test_id_and_paging_bounds_are_in_the_schema(service: AppClient) -> None:
    paths = _schema(service)["paths"]
    for path, method, name in (
        ("/videos/{video_id}", "get", "video_id"),
        ("/videos/{video_id}", "delete", "video_id"),
        ("/search", "get", "video_id"),
        ("/videos", "get", "offset"),
    ):
        (parameter,) = [p for p in paths[path][method]["parameters"] if p["name"] == name]
        assert parameter["schema"]["maximum"] == MAX_ID, (path, method, name)
    (external_id,) = [p for p in paths["/videos"]["get"]["parameters"] if p["name"] == "external_id"]
    text = next(branch for branch in external_id["schema"]["anyOf"] if branch.get("type") == "string")
    pattern = _js_pattern(external_id["schema"]["pattern"])  # beside anyOf: a pattern constrains strings only
    assert text["maxLength"] == 255 and re.fullmatch(pattern, "cms-1")
    assert not re.fullmatch(pattern, "cms\x001")


def _js_pattern(pattern: str) -> str:
    return pattern.encode().decode("unicode_escape")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/videos", "GET, POST"),
        ("DELETE", "/videos", "GET, POST"),
        ("POST", "/videos/1", "DELETE, GET, PATCH"),
        ("PUT", "/videos/1", "DELETE, GET, PATCH"),
        ("PUT", "/search", "GET, POST"),
        ("POST", "/healthz", "GET"),
    ],
)
def test_405_names_every_allowed_method(service: AppClient, method: str, path: str, allowed: str) -> None:
    response = service.client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    Message.model_validate(response.json())


def test_upload_statuses_are_documented(service: AppClient) -> None:
    paths = _schema(service)["paths"]
    for path in ("/videos", "/search"):
        responses = paths[path]["post"]["responses"]
        assert {"400", "413", "415", "422"} <= set(responses), path
        assert "empty" in responses["400"]["description"]
    for path in ("/videos", "/search"):
        response = service.client.post(path, files={"file": ("empty.mp4", b"", "video/mp4")})
        assert response.status_code == 400 and response.json() == {"detail": "the uploaded file is empty"}


def test_upload_form_schema_declares_the_field_rules(service: AppClient) -> None:
    body = _schema(service)["paths"]["/videos"]["post"]["requestBody"]["content"]["multipart/form-data"]
    properties = body["schema"]["properties"]
    assert properties["title"]["maxLength"] == 500 and "pattern" in properties["title"]
    assert properties["metadata"]["type"] == "object"
    assert body["encoding"]["metadata"]["contentType"] == "application/json"
    assert body["schema"]["additionalProperties"] is False
    value = _schema(service)["components"]["schemas"]["MetadataValue"]
    assert value["maximum"] == 10**19 - 1 and value["minimum"] == -(10**19 - 1)


def test_every_refusal_is_counted(service_factory, media: Media) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(max_upload_bytes=50_000)
    video = media.video("a.mp4", seed=1, seconds=1)
    service.upload(video, content_type="text/plain")  # 415
    service.upload(media.raw("big.mp4", b"\0" * 60_000))  # 413
    service.upload(video, title="a\x00b")  # 422
    service.client.get("/videos/99")  # 404
    service.client.put("/videos")  # 405
    service.client.get("/nowhere")  # 404, no route
    counted = {
        ("/videos", "415"): 1,
        ("/videos", "413"): 1,
        ("/videos", "422"): 1,
        ("/videos/{video_id}", "404"): 1,
        ("/videos", "405"): 1,
        ("unmatched", "404"): 1,
    }
    for (route, status), number in counted.items():
        assert _metric(service, "hapvr_rejections_total", route=route, status=status) == number, (route, status)
    assert _metric(service, "hapvr_uploads_total", outcome="rejected") == 3


def test_docs_load_from_the_app_alone(service: AppClient) -> None:
    """The page names no other host, and every script, style and icon it names is served here."""
    page = service.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"(?:https?:)?//", page.text), "the page refers to another host"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {asset.rsplit("/", 1)[-1] for asset in assets} == {
        "swagger-ui.css",
        "favicon-32x32.png",
        "swagger-ui-bundle.js",
    }
    kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        response = service.client.get(asset)
        assert response.status_code == 200 and len(response.content) > 100, asset
        assert kinds[asset[asset.rindex(".") :]] in response.headers["content-type"], asset
    bundle = service.client.get(next(a for a in assets if a.endswith(".js"))).text
    # Swagger UI 5 or later reads OpenAPI 3.1 (what FastAPI writes); 4 shows an error instead.
    assert "isOAS31" in bundle
    assert "'/openapi.json'" in page.text and service.client.get("/openapi.json").status_code == 200
    assert service.client.get("/redoc").status_code == 404  # it would need a CDN


@pytest.mark.parametrize("number", [1e19, -2.5e30, 1.5e300])
def test_metadata_numbers_the_schema_refuses_are_refused(service: AppClient, media: Media, number: float) -> None:
    """The schema's bound holds for every number (1e19 is an integer to a validator); the service
    once accepted large floats, which the fuzzer's negative cases reported."""
    import json

    import jsonschema_rs  # schemathesis's validator

    value = _schema(service)["components"]["schemas"]["MetadataValue"]
    validator = jsonschema_rs.validator_for({**value, "additionalProperties": {}, "items": {}})  # no $ref
    assert not validator.is_valid(number) and validator.is_valid(1.5e18)
    video = media.video("a.mp4", seed=1, seconds=1)
    refused = service.upload(video, metadata=json.dumps({"a": number}))
    assert refused.status_code == 422 and "out of range" in refused.json()["detail"]
    assert service.upload(video, metadata=json.dumps({"a": 1.5e18})).status_code == 202
