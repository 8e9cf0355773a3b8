"""The published score: the alignment score mapped onto a calibrated 0-1 scale, and named tiers.

The alignment (model.similarity.alignment) scores a pair by strength x coverage of its copied
segments: 1 for a video against itself, 0 when nothing aligns. A monotone logistic map fitted
on the training side of the benchmark (bench/calibrate.py) turns that into an estimate of how
likely the pair shares copied footage, rescaled so 0 stays 0 and 1 stays 1:

    score = (sigmoid(slope * (a - midpoint)) - sigmoid(-slope * midpoint)) / (sigmoid(slope * (1 - midpoint)) - sigmoid(-slope * midpoint))

Being monotone, the map never changes a ranking; it fixes what a threshold means. Tiers, from
the calibrated score and how much of the shorter video the segments cover:

- duplicate: score >= partial threshold and coverage >= duplicate_coverage (one video is,
  nearly whole, inside the other: a re-encode, an excerpt, a splice);
- partial: score >= partial threshold (they share at least one segment);
- related: score >= related threshold (some aligned footage, too little to call a copy);
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
    slope: float
    midpoint: float
    partial: float  # calibrated score from which a pair is a copy (partial or duplicate)
    related: float
    duplicate_coverage: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.slope <= 0 or not 0 <= self.related <= self.partial <= 1 or not 0 < self.duplicate_coverage <= 1:
            raise ValueError("calibration needs slope > 0 and 0 <= related <= partial <= 1, 0 < coverage <= 1")

    def __call__(self, alignment_score: float) -> float:
        """Alignment score (0-1) -> calibrated score (0-1), monotone, with 0 -> 0 and 1 -> 1."""
        a = min(max(float(alignment_score), 0.0), 1.0)
        low, high = _sigmoid(-self.slope * self.midpoint), _sigmoid(self.slope * (1 - self.midpoint))
        return (_sigmoid(self.slope * (a - self.midpoint)) - low) / (high - low)

    def tier(self, score: float, coverage: float) -> Tier:
        if score >= self.partial:
            return "duplicate" if coverage >= self.duplicate_coverage else "partial"
        if score >= self.related:
            return "related"
        return "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "slope": self.slope,
            "midpoint": self.midpoint,
            "partial": self.partial,
            "related": self.related,
            "duplicate_coverage": self.duplicate_coverage,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        return cls(
            slope=float(values["slope"]),
            midpoint=float(values["midpoint"]),
            partial=float(values["partial"]),
            related=float(values["related"]),
            duplicate_coverage=float(values["duplicate_coverage"]),
            provenance=dict(values.get("provenance", {})),
        )


@lru_cache(maxsize=1)
def shipped_calibration() -> Calibration:
    return Calibration.from_dict(json.loads(SHIPPED.read_text()))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
