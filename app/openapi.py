"""The OpenAPI schema, with the limits that come from the settings written into it.

Route signatures are fixed when the modules load, but `max_k` and the metadata limits are
settings: they are filled in here when the schema is first built, so the schema promises
exactly what this instance enforces.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.metadata import MetadataLimits, metadata_value_schema
from app.routes.videos import METADATA_VALUE_REF
from indexer.settings import Settings


def install_openapi(app: FastAPI, settings: Settings) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            apply_settings(build(), settings)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def apply_settings(schema: dict[str, Any], settings: Settings) -> None:
    """Set the maximum of every `k` query parameter and define the metadata value schema."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "k" and parameter["in"] == "query":
                    for branch in parameter["schema"].get("anyOf", [parameter["schema"]]):
                        if branch.get("type") == "integer":
                            branch["maximum"] = settings.max_k
    name = METADATA_VALUE_REF.rsplit("/", 1)[-1]
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas[name] = metadata_value_schema(MetadataLimits.from_settings(settings), METADATA_VALUE_REF)
