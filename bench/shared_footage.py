"""Which stretches of footage each benchmark video shows, and the relevance that follows from them.

Two videos are a copy pair when they show the same stretch of a database segment for at least
MIN_SHARED_SECONDS: an original and its full-length copies; two partial copies of one original
only where their spans overlap (a subclip of seconds 0-3 and one of seconds 5-8 share a
recording, not a frame, so they rank like other stretches of one recording).

Copies that reuse the same stretch of a background (splices opening on the same seconds of a
background recording, picture-in-picture copies over the same background) share footage too,
often more of their picture than labelled copies do, but footage the benchmark keeps out of its
database: such pairs are left unjudged (out of each other's ranking), neither rewarded nor
counted against a method.

Spans are on the timeline of a database segment or a background segment, in seconds, from the
parameters each edit recorded (bench/edits.py): subclip and splice keep `source_span`, a splice
opens on the first seconds of its background and closes on the seconds after them, and a
picture-in-picture copy shows its background over the whole length. Backgrounds loop when a
copy needs more than they hold (bench/edits.py `fit`), so their spans wrap.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

MIN_SHARED_SECONDS = 1.0  # one frame at the service's 1 fps sampling


@dataclass(frozen=True)
class Span:
    """[start, end) seconds of one segment's timeline."""

    segment: str
    start: float
    end: float


def copy_spans(
    original: str,
    original_seconds: float,
    edit: Mapping,
    copy_seconds: float,
    background_seconds: Mapping[str, float],
) -> list[Span]:
    """The footage a copy shows, from the parameters its edit recorded."""
    kind = edit.get("edit")
    start, end = edit.get("source_span", (0.0, original_seconds))
    spans = [Span(original, float(start), float(end))]
    other = str(edit.get("other", "")).removesuffix(".mp4")
    if kind == "pip":
        spans += _looped(other, 0.0, original_seconds, background_seconds[other])
    elif kind == "splice":
        copy_start, copy_end = edit["copy_span"]
        head, tail = float(copy_start), copy_seconds - float(copy_end)
        spans += _looped(other, 0.0, head, background_seconds[other])
        spans += _looped(other, head, head + tail, background_seconds[other])
    return spans


def _looped(segment: str, start: float, end: float, length: float) -> list[Span]:
    """[start, end) of a segment that repeats every `length` seconds, as spans inside it."""
    spans = []
    while end - start > 1e-9:
        offset = start % length
        take = min(end - start, length - offset)
        spans.append(Span(segment, offset, offset + take))
        start += take
    return spans


def shared_seconds(a: Iterable[Span], b: Iterable[Span]) -> float:
    """Seconds of footage both span lists show (overlaps of spans of the same segment)."""
    b = list(b)
    return sum(max(0.0, min(x.end, y.end) - max(x.start, y.start)) for x in a for y in b if x.segment == y.segment)


def is_copy_pair(a: list[Span], b: list[Span], segments: Collection[str]) -> bool:
    """True when, on one of `segments` both show, they share MIN_SHARED_SECONDS of it, or half of
    what the one showing less of it shows (a sub-second excerpt is still a copy of its source)."""
    for segment in {x.segment for x in a} & {y.segment for y in b} & set(segments):
        on_a = [x for x in a if x.segment == segment]
        on_b = [y for y in b if y.segment == segment]
        shown = min(sum(x.end - x.start for x in on_a), sum(y.end - y.start for y in on_b))
        if shared_seconds(on_a, on_b) >= max(1e-3, min(MIN_SHARED_SECONDS, shown / 2) - 1e-6):
            return True
    return False


def copy_pairs(
    footage: Mapping[str, list[Span]], queries: Iterable[str], segments: Collection[str]
) -> dict[str, list[str]]:
    """Each query's partners: every other video it makes a copy pair with on one of `segments`."""
    return {q: [v for v in footage if v != q and is_copy_pair(footage[q], footage[v], segments)] for q in queries}
