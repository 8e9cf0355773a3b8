"""Path and query parameters shared by the routes, with the bounds the catalog needs.

Bounds live in the schema, so an out-of-range value is a 422 that names the parameter (never a
database error) and clients and fuzzers read the same limits the service applies.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

from app.schemas import EXTERNAL_ID_MAX_LENGTH, MAX_ID, PRINTABLE_PATTERN, printable
from model.similarity.calibration import Tier

VideoIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="the video's id")]
VideoIdQuery = Annotated[int, Query(ge=1, le=MAX_ID, description="the indexed video to search with")]
Limit = Annotated[int, Query(ge=1, le=500, description="videos per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="videos skipped before the page")]
ExternalIdFilter = Annotated[
    str | None,
    Query(
        max_length=EXTERNAL_ID_MAX_LENGTH,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
        description="only videos with this external id",
    ),
    AfterValidator(printable),
]
# The maximum is the `max_k` setting, written into the schema by app.openapi.
K = Annotated[int | None, Query(ge=1, description="results wanted (default from settings)")]
MinScore = Annotated[
    float | None,
    Query(ge=0.0, le=1.0, description="drop results whose calibrated score (0-1) is below this"),
]
TierFilter = Annotated[
    list[Tier] | None,
    Query(description="keep only results of these tiers (repeat for several): duplicate, partial, related, none"),
]
Sha256Filter = Annotated[
    str | None,
    Query(pattern="^[0-9a-f]{64}$", description="only the video with these bytes (lower-case hex sha256)"),
]
