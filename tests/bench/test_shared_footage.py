"""bench.shared_footage: which benchmark videos are copy pairs, from the footage they show."""

from __future__ import annotations

import pytest

from bench.shared_footage import MIN_SHARED_SECONDS, Span, copy_pairs, copy_spans, shared_seconds

BACKGROUNDS = {"bg": 8.0}


def spans(edit: dict, copy_seconds: float = 8.0) -> list[Span]:
    return copy_spans("orig", 8.0, edit, copy_seconds, BACKGROUNDS)


def test_full_length_copies_show_the_whole_original() -> None:
    assert spans({"edit": "blur"}) == [Span("orig", 0.0, 8.0)]


def test_partial_copies_pair_only_where_their_spans_overlap() -> None:
    early = spans({"edit": "subclip", "source_span": [0.0, 3.0]})
    late = spans({"edit": "subclip", "source_span": [5.0, 8.0]})
    middle = spans({"edit": "subclip", "source_span": [2.0, 6.0]})
    assert shared_seconds(early, late) == 0.0
    assert shared_seconds(early, middle) == pytest.approx(1.0)
    assert shared_seconds(late, middle) == pytest.approx(1.0)
    footage = {"orig": [Span("orig", 0, 8)], "a": early, "b": late, "c": middle}
    pairs = copy_pairs(footage, ["a", "b", "c", "orig"], segments=["orig"])
    assert pairs["a"] == ["orig", "c"] and pairs["b"] == ["orig", "c"]
    assert sorted(pairs["orig"]) == ["a", "b", "c"]


def test_splices_over_one_background_share_its_opening() -> None:
    # 3 s of background, 4 s of the original, 2 s more background from where the opening ended.
    one = spans({"edit": "splice", "source_span": [1.0, 5.0], "copy_span": [3.0, 7.0], "other": "bg.mp4"}, 9.0)
    assert one == [Span("orig", 1.0, 5.0), Span("bg", 0.0, 3.0), Span("bg", 3.0, 5.0)]
    other = copy_spans(
        "x",
        8.0,
        {"edit": "splice", "source_span": [0, 4], "copy_span": [2.5, 6.5], "other": "bg.mp4"},
        8.0,
        BACKGROUNDS,
    )
    assert shared_seconds(one, other) == pytest.approx(2.5 + 1.5)
    assert shared_seconds(one, other) >= MIN_SHARED_SECONDS


def test_background_spans_wrap_where_the_background_loops() -> None:
    # 5 s opening and 5 s closing over an 8 s background: the closing seconds loop to its start.
    spliced = spans({"edit": "splice", "source_span": [0, 4], "copy_span": [5.0, 9.0], "other": "bg.mp4"}, 14.0)
    assert spliced[1:] == [Span("bg", 0.0, 5.0), Span("bg", 5.0, 8.0), Span("bg", 0.0, 2.0)]


def test_picture_in_picture_shows_its_background_throughout() -> None:
    pip = spans({"edit": "pip", "box": [10, 10, 60, 40], "other": "bg.mp4"})
    other_pip = copy_spans("x", 8.0, {"edit": "pip", "other": "bg.mp4"}, 8.0, BACKGROUNDS)
    assert pip == [Span("orig", 0.0, 8.0), Span("bg", 0.0, 8.0)]
    assert shared_seconds(pip, other_pip) == pytest.approx(8.0)


def test_an_excerpt_shorter_than_a_second_is_still_a_copy_of_its_source() -> None:
    short = spans({"edit": "subclip", "source_span": [0.5, 1.2]})
    neighbour = spans({"edit": "subclip", "source_span": [1.1, 3.0]})
    pairs = copy_pairs({"orig": [Span("orig", 0, 8)], "short": short, "n": neighbour}, ["short", "n"], ["orig"])
    assert pairs["short"] == ["orig"] and pairs["n"] == ["orig"]


def test_pairs_count_only_the_segments_asked_for() -> None:
    # Two picture-in-picture copies of different originals over one background: a pair through
    # the background, none through the database segments.
    footage = {
        "a": copy_spans("x", 8.0, {"edit": "pip", "other": "bg.mp4"}, 8.0, BACKGROUNDS),
        "b": copy_spans("y", 8.0, {"edit": "pip", "other": "bg.mp4"}, 8.0, BACKGROUNDS),
    }
    assert copy_pairs(footage, ["a"], segments=["x", "y"]) == {"a": []}
    assert copy_pairs(footage, ["a"], segments=["bg"]) == {"a": ["b"]}
