"""The published score: a calibrated 0-1 estimate that two videos share copied footage, and named tiers.

Three measurements of a pair go in: the alignment score `a` (model.similarity.alignment:
strength x coverage of the copied segments, 1 for a video against itself, 0 when nothing
aligns), which finds partial copies and locates them, and the similarity network's own score
`raw` (-1 to 1), which still ranks whole copies whose frames are too degraded to align, and
the frame contrast `c` (model.similarity.alignment.frame_contrast, 0-1): how sharply each
frame's best match stands out, which tells a copy from another stretch of the same fixed
camera (a calibration stored before it existed has contrast_weight 0). A logistic model
fitted by maximum likelihood on footage no model was trained on (the held-out benchmark,
measured by cross-fitting over its recordings: bench/calibrate.py) combines them:

    score = sigmoid(alignment_weight * a + raw_weight * raw + contrast_weight * c + bias)

so a score is the fitted probability that the pair shares footage: 0.5 means even odds on
the benchmark's mix of copies and unrelated videos. The weights are non-negative, so the
score rises with each measurement; a video against itself scores above 0.99 and unrelated
footage near 0. Tiers, from the score and how much of the more covered video the segments
cover:

- duplicate: score >= partial threshold and coverage >= duplicate_coverage (one video is,
  nearly whole, inside the other: a re-encode, an excerpt, a splice);
- partial: score >= partial threshold (they share footage, a part of each);
- related: score >= related threshold (likely shared footage, below the copy threshold);
- none: below.

The shipped constants live in calibration.json next to this file, with their provenance.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

Tier = Literal["duplicate", "partial", "related", "none"]
TIERS: tuple[Tier, ...] = ("duplicate", "partial", "related", "none")
SHIPPED = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True)
class Calibration:
    alignment_weight: float
    raw_weight: float
    bias: float
    partial: float  # calibrated score from which a pair is a copy (partial or duplicate)
    related: float
    duplicate_coverage: float
    provenance: dict[str, Any] = field(default_factory=dict)
    contrast_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.alignment_weight <= 0 or self.raw_weight < 0 or self.contrast_weight < 0:
            raise ValueError("calibration weights must be positive: the score must rise with both measurements")
        if not 0 <= self.related <= self.partial <= 1 or not 0 < self.duplicate_coverage <= 1:
            raise ValueError("calibration needs 0 <= related <= partial <= 1 and 0 < duplicate_coverage <= 1")

    def __call__(self, alignment_score: float, raw_score: float, contrast: float = 0.0) -> float:
        """Alignment score (0-1), network score (-1 to 1) and frame contrast (0-1) -> calibrated score (0-1)."""
        a = min(max(float(alignment_score), 0.0), 1.0)
        raw = min(max(float(raw_score), -1.0), 1.0)
        c = min(max(float(contrast), 0.0), 1.0)
        return _sigmoid(self.alignment_weight * a + self.raw_weight * raw + self.contrast_weight * c + self.bias)

    def tier(self, score: float, coverage: float) -> Tier:
        if score >= self.partial:
            return "duplicate" if coverage >= self.duplicate_coverage else "partial"
        if score >= self.related:
            return "related"
        return "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "alignment_weight": self.alignment_weight,
            "raw_weight": self.raw_weight,
            "contrast_weight": self.contrast_weight,
            "bias": self.bias,
            "partial": self.partial,
            "related": self.related,
            "duplicate_coverage": self.duplicate_coverage,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        return cls(
            alignment_weight=float(values["alignment_weight"]),
            raw_weight=float(values["raw_weight"]),
            bias=float(values["bias"]),
            partial=float(values["partial"]),
            related=float(values["related"]),
            duplicate_coverage=float(values["duplicate_coverage"]),
            provenance=dict(values.get("provenance", {})),
            contrast_weight=float(values.get("contrast_weight", 0.0)),
        )


@lru_cache(maxsize=1)
def shipped_calibration() -> Calibration:
    return Calibration.from_dict(json.loads(SHIPPED.read_text()))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
