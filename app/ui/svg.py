"""Server-drawn SVG for the web UI: match timelines and the frame-similarity heat map.

Drawn here, not in the browser, so the pages need no charting script; every range carries its
times in `data-a` / `data-b` (seconds in the first and the second video), which the compare
page's small script uses to seek both players.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from markupsafe import Markup, escape

# Colour ramp of the heat map (viridis at five stops): dark is dissimilar, yellow alike.
RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)
# Cells per side at most: finer matrices are max-pooled (a match stays visible when shrunk).
MAX_CELLS = 120
RANGE_COLOUR = "#e8590c"


def _time(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def _range_title(segment: Mapping[str, Any]) -> str:
    text = (
        f"{_time(segment['query_start'])}–{_time(segment['query_end'])} here ~ "
        f"{_time(segment['target_start'])}–{_time(segment['target_end'])} there"
    )
    if segment.get("score") is not None:
        text += f" (frame similarity {segment['score']:.2f})"
    return text


def timeline(
    segments: Sequence[Mapping[str, Any]], first_duration: float, second_duration: float, *, width: int = 560
) -> Markup:
    """Two bars, this video above and the other below, with each matched range on both and a band
    joining them."""
    height, bar, gap = 58, 14, 30
    top, bottom = 0, bar + gap
    first_duration, second_duration = max(first_duration, 1e-3), max(second_duration, 1e-3)
    parts = [
        # Stretched to the width of its box (time runs along x only), at its own height.
        f'<svg class="timeline" viewBox="0 0 {width} {height}" width="100%" height="{height}" '
        f'preserveAspectRatio="none" role="img" aria-label="{len(segments)} matched range(s)">',
        f'<rect x="0" y="{top}" width="{width}" height="{bar}" rx="3" class="track"/>',
        f'<rect x="0" y="{bottom}" width="{width}" height="{bar}" rx="3" class="track"/>',
    ]
    for segment in segments:
        x1 = width * segment["query_start"] / first_duration
        x2 = width * segment["query_end"] / first_duration
        y1 = width * segment["target_start"] / second_duration
        y2 = width * segment["target_end"] / second_duration
        w1, w2 = max(x2 - x1, 2.0), max(y2 - y1, 2.0)
        title = escape(_range_title(segment))
        parts.append(
            f'<g class="range" data-a="{segment["query_start"]:.2f}" data-b="{segment["target_start"]:.2f}" '
            f'tabindex="0"><title>{title}</title>'
            f'<polygon points="{x1:.1f},{bar} {x1 + w1:.1f},{bar} {y1 + w2:.1f},{bottom} {y1:.1f},{bottom}" '
            f'class="band"/>'
            f'<rect x="{x1:.1f}" y="{top}" width="{w1:.1f}" height="{bar}" rx="2" fill="{RANGE_COLOUR}"/>'
            f'<rect x="{y1:.1f}" y="{bottom}" width="{w2:.1f}" height="{bar}" rx="2" fill="{RANGE_COLOUR}"/></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _pool(matrix: np.ndarray, cells: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool `matrix` along `axis` to at most `cells`; returns it and each cell's first index."""
    count = matrix.shape[axis]
    starts = np.unique(np.linspace(0, count, min(count, cells), endpoint=False).astype(int))
    return np.maximum.reduceat(matrix, starts, axis=axis), starts


def _step(times: np.ndarray) -> float:
    return float(np.median(np.diff(times))) if len(times) > 1 else 1.0


def _colour(value: float) -> str:
    position = float(np.clip(value, 0.0, 1.0)) * (len(RAMP) - 1)
    low = int(min(position, len(RAMP) - 2))
    red, green, blue = RAMP[low] + (RAMP[low + 1] - RAMP[low]) * (position - low)
    return f"#{int(red):02x}{int(green):02x}{int(blue):02x}"


def heat_map(
    similarity: np.ndarray,
    first_times: np.ndarray,
    second_times: np.ndarray,
    segments: Sequence[Mapping[str, Any]],
    *,
    size: int = 480,
) -> Markup:
    """The frame-similarity matrix (rows: the first video's frames, columns: the second's), with
    the aligned segments drawn over it as lines from their start to their end."""
    pooled, rows = _pool(np.asarray(similarity, dtype=np.float64), MAX_CELLS, 0)
    pooled, cols = _pool(pooled, MAX_CELLS, 1)
    cell_w, cell_h = size / pooled.shape[1], size / pooled.shape[0]
    margin = 36
    # Each frame's cell spans from its time to the next frame's, the last one a frame step long.
    first_step, second_step = _step(first_times), _step(second_times)
    first_end = float(first_times[-1]) + first_step if len(first_times) else 1.0
    second_end = float(second_times[-1]) + second_step if len(second_times) else 1.0
    parts = [
        f'<svg class="heatmap" viewBox="0 0 {size + margin} {size + margin}" width="{size + margin}" '
        f'height="{size + margin}" role="img" aria-label="frame similarity">',
        f'<g transform="translate({margin},{margin})">',
    ]
    for i, row in enumerate(pooled):
        for j, value in enumerate(row):
            a, b = float(first_times[rows[i]]), float(second_times[cols[j]])
            parts.append(
                f'<rect class="cell" x="{j * cell_w:.2f}" y="{i * cell_h:.2f}" width="{cell_w + 0.3:.2f}" '
                f'height="{cell_h + 0.3:.2f}" fill="{_colour(value)}" data-a="{a:.2f}" data-b="{b:.2f}">'
                f"<title>{_time(a)} ~ {_time(b)}: {value:.2f}</title></rect>"
            )
    for segment in segments:
        x1 = size * segment["target_start"] / second_end
        x2 = size * (segment["target_end"] + second_step) / second_end
        y1 = size * segment["query_start"] / first_end
        y2 = size * (segment["query_end"] + first_step) / first_end
        parts.append(
            f'<g class="range" data-a="{segment["query_start"]:.2f}" data-b="{segment["target_start"]:.2f}">'
            f"<title>{escape(_range_title(segment))}</title>"
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" class="segment-line"/>'
            f'<circle cx="{x1:.1f}" cy="{y1:.1f}" r="4" class="segment-start"/></g>'
        )
    parts.append("</g>")
    parts.append(f'<text x="{margin}" y="14" class="axis">second video →  ({_time(second_end)})</text>')
    parts.append(
        f'<text x="14" y="{margin}" class="axis" transform="rotate(90 14 {margin})">'
        f"first video →  ({_time(first_end)})</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))
