"""/duplicates: groups of videos that share footage, read from the stored match graph."""

from __future__ import annotations

import csv
import io
from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import RequireRead, SessionDep, SettingsDep
from app.routes.params import MinScore
from app.routes.videos import INVALID
from app.schemas import DuplicateEdge, DuplicateGroup, DuplicatesPublic, DuplicateVideo
from indexer import catalog, match_graph

router = APIRouter(prefix="/duplicates", tags=["duplicates"], responses=INVALID)

Tier = Enum("Tier", {name: name for name in match_graph.TIERS}, type=str)  # type: ignore[misc]


class Format(str, Enum):
    json = "json"
    csv = "csv"


CSV_COLUMNS = ("group", "group_size", "max_score", "video_id", "title", "external_id", "filename", "duration")


def find_groups(session: SessionDep, min_score: float | None, tier: str | None) -> DuplicatesPublic:
    """The groups as the API answers them (also what the web page shows)."""
    found = match_graph.groups(session=session, min_score=min_score, tier=tier)
    rows = catalog.videos_by_ids([v for group in found for v in group.video_ids], session=session)
    data = [
        DuplicateGroup(
            size=len(group.video_ids),
            max_score=group.max_score,
            videos=[DuplicateVideo.model_validate(rows[v]) for v in group.video_ids if v in rows],
            edges=[DuplicateEdge(a=a, b=b, score=score, tier=t) for a, b, score, t in group.edges],
        )
        for group in found
    ]
    return DuplicatesPublic(
        min_score=min_score, tier=tier, count=len(data), videos=sum(g.size for g in data), data=data
    )


def as_csv(result: DuplicatesPublic) -> str:
    """One row per video of each group (spreadsheets read it as is)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for number, group in enumerate(result.data, start=1):
        for video in group.videos:
            writer.writerow(
                (
                    number,
                    group.size,
                    f"{group.max_score:.4f}",
                    video.id,
                    video.title or "",
                    video.external_id or "",
                    video.filename or "",
                    "" if video.duration is None else f"{video.duration:.2f}",
                )
            )
    return out.getvalue()


@router.get(
    "",
    response_model=DuplicatesPublic,
    responses={200: {"content": {"text/csv": {}}, "description": "the groups (JSON, or CSV with format=csv)"}},
    dependencies=[RequireRead],
)
def list_duplicates(
    session: SessionDep,
    settings: SettingsDep,
    min_score: MinScore = None,
    tier: Annotated[Tier | None, Query(description="matches of this tier or a stronger one")] = None,
    format: Format = Format.json,
) -> Response:
    """Sets of videos connected by matches at or above `min_score` (and `tier`), biggest first.

    Read from the match graph written as videos are indexed (one search per video), not searched
    for per request: the cost is a scan of the edges above the threshold and a union-find.
    With neither `min_score` nor `tier`, `tier` is HAPVR_DUPLICATES_TIER (partial: copies).
    """
    chosen_tier = tier.value if tier is not None else None
    if min_score is None and chosen_tier is None:
        chosen_tier = settings.duplicates_tier
    result = find_groups(session, min_score, chosen_tier)
    if format is Format.csv:
        return Response(
            as_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="duplicates.csv"'},
        )
    return Response(result.model_dump_json(), media_type="application/json")
