"""The server-drawn SVG: timelines put each range on both bars; heat maps stay small and keep matches."""

from __future__ import annotations

import re

import numpy as np

from app.ui import svg

SEGMENT = {"query_start": 2.0, "query_end": 4.0, "target_start": 10.0, "target_end": 12.0, "score": 0.9}


def test_timeline_places_a_range_on_both_videos() -> None:
    drawn = str(svg.timeline([SEGMENT], 8.0, 20.0, width=400))
    rects = re.findall(r'<rect x="([\d.]+)" y="(\d+)" width="([\d.]+)"', drawn)
    ranges = [(float(x), float(w)) for x, y, w in rects if float(w) < 400]
    assert ranges == [(100.0, 100.0), (200.0, 40.0)]  # 2-4 s of 8 s above, 10-12 s of 20 s below
    assert 'data-a="2.00" data-b="10.00"' in drawn


def test_heat_map_is_pooled_and_keeps_the_best_value() -> None:
    similarity = np.zeros((300, 200))
    similarity[150, 77] = 1.0
    drawn = str(svg.heat_map(similarity, np.arange(300.0), np.arange(200.0), [SEGMENT]))
    cells = re.findall(r'<rect class="cell"[^>]*fill="(#[0-9a-f]{6})"', drawn)
    assert len(cells) == svg.MAX_CELLS * svg.MAX_CELLS
    assert cells.count(svg._colour(1.0)) == 1  # the one alike pair survives max-pooling
    assert drawn.count('class="segment-line"') == 1
