"""The match graph: which videos share footage, kept in the catalog as videos come and go.

When a video turns ready its own search is run once (indexer.graph_updater) and each hit is
stored as an edge `query -> target` with its score and matched segments; deleting either video
deletes the edge (ON DELETE CASCADE). A pair is found when the later of its two videos is
indexed, so no edge ever needs a search of the earlier one again.

Duplicate groups are the connected components of the edges at or above a score (or of a tier),
among ready videos. Reading them costs one indexed range scan of `video_matches` plus a
union-find over the rows read: O(E log E) for E edges above the threshold, and E is at most
`graph_neighbours` x N videos (bench/results/duplicates.md has the measured times).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from indexer.catalog import READY
from indexer.orm import Video, VideoMatch, utcnow

# Tiers from the strongest down; a tier filter keeps that tier and the stronger ones.
TIERS = ("duplicate", "partial", "related")


@dataclass(frozen=True)
class Edge:
    """A hit of the query video's search, as stored."""

    target_id: int
    score: float
    segments: list[dict[str, float | None]]
    tier: str | None = None


def segment_dict(segment: Any) -> dict[str, float | None]:
    """A matched segment (model.similarity.segments.Segment or alike) as stored JSON."""
    score = getattr(segment, "score", None)
    return {
        "query_start": float(segment.query_start),
        "query_end": float(segment.query_end),
        "target_start": float(segment.target_start),
        "target_end": float(segment.target_end),
        "score": None if score is None else float(score),
    }


def pending(*, session: Session, limit: int = 100) -> list[int]:
    """Ready videos whose matches are not written yet, oldest first."""
    query = select(Video.id).where(Video.status == READY, Video.matched_at.is_(None)).order_by(Video.id).limit(limit)
    return list(session.scalars(query))


def replace_edges(video_id: int, edges: Iterable[Edge], *, session: Session) -> bool:
    """Make `edges` the video's matches and mark it matched; False (nothing written) when it is
    no longer ready (deleted or re-indexed meanwhile: its next indexing writes them)."""
    marked = session.execute(
        update(Video).where(Video.id == video_id, Video.status == READY).values(matched_at=utcnow())
    )
    if marked.rowcount != 1:  # type: ignore[attr-defined]
        return False
    # Edges found by other videos' searches go too: this search sees them again, with the new features.
    session.execute(delete(VideoMatch).where(or_(VideoMatch.query_id == video_id, VideoMatch.target_id == video_id)))
    for edge in edges:
        if edge.target_id == video_id:
            continue
        session.add(
            VideoMatch(
                query_id=video_id, target_id=edge.target_id, score=edge.score, tier=edge.tier, segments=edge.segments
            )
        )
    session.flush()
    return True


@dataclass(frozen=True)
class StoredMatch:
    """An edge as seen from one of its videos: segments oriented `this video -> other`."""

    other_id: int
    score: float
    tier: str | None
    segments: list[dict[str, float | None]]


def flip(segments: Sequence[dict[str, float | None]]) -> list[dict[str, float | None]]:
    """Segments of `a -> b` as `b -> a`."""
    return [
        {
            "query_start": s["target_start"],
            "query_end": s["target_end"],
            "target_start": s["query_start"],
            "target_end": s["query_end"],
            "score": s.get("score"),
        }
        for s in segments
    ]


def pair(first: int, second: int, *, session: Session) -> StoredMatch | None:
    """The stored edge between two videos (either direction), oriented `first -> second`."""
    rows = session.scalars(
        select(VideoMatch).where(
            or_(
                (VideoMatch.query_id == first) & (VideoMatch.target_id == second),
                (VideoMatch.query_id == second) & (VideoMatch.target_id == first),
            )
        )
    ).all()
    if not rows:
        return None
    best = max(rows, key=lambda row: row.score)
    segments = best.segments if best.query_id == first else flip(best.segments)
    return StoredMatch(other_id=second, score=best.score, tier=best.tier, segments=segments)


@dataclass
class Group:
    """A connected component: its videos (ascending ids), its edges and its best score."""

    video_ids: list[int]
    edges: list[tuple[int, int, float, str | None]] = field(default_factory=list)

    @property
    def max_score(self) -> float:
        return max(score for _, _, score, _ in self.edges)


def groups(*, session: Session, min_score: float | None = None, tier: str | None = None) -> list[Group]:
    """Connected components of the ready videos' edges at or above `min_score` and `tier`;
    biggest first, then by best score."""
    # Edges by the score index alone, then those touching a video that is not ready dropped: far fewer
    # rows than a join with the videos table, which SQLite would plan as a scan of every edge.
    query = select(VideoMatch.query_id, VideoMatch.target_id, VideoMatch.score, VideoMatch.tier)
    if min_score is not None:
        query = query.where(VideoMatch.score >= min_score)
    if tier is not None:
        query = query.where(VideoMatch.tier.in_(TIERS[: TIERS.index(tier) + 1]))
    hidden = set(session.scalars(select(Video.id).where(Video.status != READY)))
    edges = [
        (int(a), int(b), float(s), t) for a, b, s, t in session.execute(query) if a not in hidden and b not in hidden
    ]
    return components(edges)


def components(edges: Sequence[tuple[int, int, float, str | None]]) -> list[Group]:
    """Union-find over undirected edges (path halving, union by size)."""
    parent: dict[int, int] = {}
    size: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        size.setdefault(node, 1)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b, _, _ in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
            size[ra] += size[rb]
    found: dict[int, Group] = {}
    for node in sorted(parent):
        found.setdefault(root(node), Group(video_ids=[])).video_ids.append(node)
    for edge in edges:
        found[root(edge[0])].edges.append(edge)
    return sorted(found.values(), key=lambda g: (-len(g.video_ids), -g.max_score, g.video_ids[0]))
