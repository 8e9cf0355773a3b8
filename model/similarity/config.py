"""Hyper-parameters of the hierarchical similarity network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SimilarityConfig:
    """Shape and behaviour of `HapVRSimilarity` (ARCHITECTURE.md section 5).

    `attention=False, comparator=False` is the training-free mode: the hierarchical Chamfer
    similarity straight over the encoder's region features.
    """

    dim: int = 512
    regions: int = 9
    rho_f: float = 0.1  # region-level TopK rate; 0.1 of 9 regions rounds to k=1, i.e. Chamfer (max)
    rho_v: float = 0.03  # video-level TopK rate over target frames
    symmetric: bool = False
    attention: bool = True
    comparator: bool = True
    min_frames: int = 4  # the comparator pools twice by 2, so shorter videos are repeated up to this
    # The comparator adds its output to F max-pooled to its own resolution, and starts with a zero
    # head and uniform attention: an untrained network then ranks like the training-free Chamfer,
    # so a short training run refines that prior instead of having to rediscover it.
    residual: bool = False

    @classmethod
    def training_free(cls, dim: int = 512, regions: int = 9) -> SimilarityConfig:
        # Symmetric Chamfer measured better than one direction without a comparator (section 10).
        return cls(dim=dim, regions=regions, attention=False, comparator=False, symmetric=True)

    @property
    def k_regions(self) -> int:
        return max(1, round(self.regions * self.rho_f))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SimilarityConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown similarity settings: {sorted(unknown)}")
        return cls(**values)
