"""Compact region features for the exact re-rank: 4-bit codes with one scale per region vector.

The re-rank reads the region features of about a hundred candidates per search, so their size
is what decides whether the feature store stays in the page cache (ARCHITECTURE section 11). In
float16 they were 9 KB a frame (683 KB per video-minute at 9 regions of 512 dims); as 4-bit
codes, two to a byte, plus a float16 step per region vector, 2.3 KB (140 KB per video-minute).

Quantiser: mid-rise uniform, 16 levels at (code - 7.5) * step, step = CLIP_RMS * rms / 8 of
each vector, values past the outer levels clipped. On the shipped model's region features
(kurtosis 3.1, max |x| 3.3 rms) that step gave the lowest error of those tried: relative L2
error 0.109 and cosine 0.994 to the original (absmax scaling: 0.137; int8: 0.008, at twice the
size). The ranking change it causes is measured by bench/quality.py (method `<model>-int4`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from model.features import VideoFeatures, mean_frame_vectors

# Half the code range covers this many RMS of a vector (see the module docstring).
CLIP_RMS = 2.75
LEVELS = 16
_HALF = LEVELS // 2

# Byte -> its two levels (low nibble first) as int8 in half steps (odd numbers -15..15), packed
# into one uint16: a gather through this table and an int8 view decode a byte in one step.
_LOW, _HIGH = np.arange(256) & 0x0F, np.arange(256) >> 4
_HALF_STEPS_OF_BYTE = (
    np.stack([2 * _LOW - (LEVELS - 1), 2 * _HIGH - (LEVELS - 1)], axis=1).astype(np.int8).view("<u2")[:, 0]
)


def encode_regions(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., D] floats -> (uint8 codes [..., ceil(D / 2)], float16 steps [...]).

    An odd dimension is padded with one zero (decoded, it is cut off again).
    """
    values = np.asarray(regions, dtype=np.float32)
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros((*values.shape[:-1], 1), np.float32)], axis=-1)
    rms = np.sqrt(np.mean(np.square(values), axis=-1))
    steps = (CLIP_RMS * rms / _HALF).astype(np.float16)
    # The step as stored (float16) is the one used, so decoding reproduces exactly these levels.
    divisor = np.where(steps > 0, steps, 1).astype(np.float32)[..., None]
    codes = np.clip(np.floor(values / divisor) + _HALF, 0, LEVELS - 1).astype(np.uint8)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return np.ascontiguousarray(packed), steps


def decode_regions(codes: np.ndarray, steps: np.ndarray, dim: int) -> np.ndarray:
    """The inverse of `encode_regions`: float16 [..., dim]."""
    return decode_regions_float32(codes, steps, dim).astype(np.float16)


def decode_regions_float32(codes: np.ndarray, steps: np.ndarray, dim: int) -> np.ndarray:
    """The decoded levels in float32 (exact: a float16 step times a small integer), before the
    float16 rounding `decode_regions` adds.

    A table gather and one multiply in single-threaded numpy: the re-rank decodes one candidate
    (a few hundred KB) at a time, where a thread pool's wake-up costs more than the work.
    """
    half_steps = _HALF_STEPS_OF_BYTE[codes].view(np.int8)[..., :dim]
    scale = steps.astype(np.float32)[..., None] * np.float32(0.5)
    return np.multiply(half_steps, scale, dtype=np.float32)


def decode_into(destination: torch.Tensor, codes: np.ndarray, steps: np.ndarray) -> torch.Tensor:
    """Decode codes [T, R, ceil(D / 2)] and steps [T, R] straight into `destination` [T, R, D]
    (the re-rank's workspace, in its dtype), with no float32 copy of the regions in between.

    Each byte is widened to 16 bits and its nibbles spread into the two bytes (low first), which
    become the odd half-step counts 2 * code - 15 in int8: integer passes over the small codes.
    Then one widening copy into the destination and one multiply by half the step, where the
    table gather and float32 product of `decode_regions_float32` cost 3x the time
    (bench/bench_feature_store.py). Exact in float32; in bfloat16 the step is rounded to
    bfloat16 first, which scales a whole region vector by at most 2**-9.
    """
    frames, regions, dim = destination.shape
    if codes.shape != (frames, regions, (dim + 1) // 2) or steps.shape != (frames, regions):
        raise ValueError(f"codes {codes.shape} and steps {steps.shape} do not fill {tuple(destination.shape)}")
    nibbles = codes.astype(np.int16)
    spread = nibbles << 4
    spread |= nibbles
    spread &= 0x0F0F
    half_steps = spread.view(np.int8)
    half_steps *= 2
    half_steps -= LEVELS - 1
    destination.copy_(torch.from_numpy(half_steps.reshape(frames, regions, -1)[..., :dim]))
    scale = torch.from_numpy(np.ascontiguousarray(steps)).to(destination.dtype)[..., None] * 0.5
    return destination.mul_(scale)


# Byte -> the sum of its two levels squared, in quarter units ((2 code - 15) ** 2 per nibble);
# and the same for the two bytes of a uint16 (a gather of half as many elements).
_QUARTER_SQUARES_OF_BYTE = ((2 * _LOW - (LEVELS - 1)) ** 2 + (2 * _HIGH - (LEVELS - 1)) ** 2).astype(np.uint16)
_PAIRS = np.arange(1 << 16)
_QUARTER_SQUARES_OF_PAIR = _QUARTER_SQUARES_OF_BYTE[_PAIRS & 0xFF] + _QUARTER_SQUARES_OF_BYTE[_PAIRS >> 8]


def region_energy(codes: np.ndarray, steps: np.ndarray, dim: int) -> np.ndarray:
    """Squared norm of each decoded region vector, [T, R] float32, from the codes alone.

    A padded odd dimension decodes to a level (-0.5 or +0.5 steps) that is cut off, so its
    square is taken out again.
    """
    if codes.shape[-1] % 2 == 0:
        quarters = _QUARTER_SQUARES_OF_PAIR[np.ascontiguousarray(codes).view(np.uint16)].sum(axis=-1, dtype=np.int64)
    else:
        quarters = _QUARTER_SQUARES_OF_BYTE[codes].sum(axis=-1, dtype=np.int64)
    if dim % 2:
        quarters -= (2 * (codes[..., -1] >> 4).astype(np.int64) - (LEVELS - 1)) ** 2
    step = steps.astype(np.float32)
    return (quarters.astype(np.float32) * np.float32(0.25) * step * step).astype(np.float32)


class CompactVideoFeatures(VideoFeatures):
    """Features read from 4-bit codes, decoded only when something needs the float values.

    The re-rank decodes a candidate's codes straight into its workspace (`decode_into`) and
    takes the frame energies from the codes (`region_energy`), so a search never makes the
    float32 regions or the frame vectors of its candidates: that was most of the old 1 ms per
    candidate. Anything that reads `regions` gets the exact float32 levels (decoded once and
    kept), and `frame_vectors` the stored ones or the mean rule over those levels.
    """

    codes: np.ndarray  # uint8 [T, R, ceil(D / 2)]
    steps: np.ndarray  # float16 [T, R]
    _dim: int
    _stored_vectors: np.ndarray | None  # stored frame vectors, or the mean rule's once computed

    @classmethod
    def from_codes(
        cls,
        codes: np.ndarray,
        steps: np.ndarray,
        dim: int,
        timestamps: np.ndarray,
        frame_vectors: np.ndarray | None = None,
        **details: Any,
    ) -> CompactVideoFeatures:
        """Features over codes; ValueError when the codes, steps, timestamps and vectors disagree."""
        if codes.ndim != 3 or steps.shape != codes.shape[:2] or codes.shape[2] != (dim + 1) // 2:
            raise ValueError(f"codes {codes.shape} and steps {steps.shape} disagree with dim {dim}")
        features = cls.__new__(cls)
        features.codes, features.steps, features._dim = codes, steps, dim
        features._stored_vectors = frame_vectors
        # The dataclass's __init__ sets every field; the two lazy ones go through their setters,
        # where None means "not decoded yet".
        VideoFeatures.__init__(
            features,
            regions=None,  # type: ignore[arg-type]
            frame_vectors=None,  # type: ignore[arg-type]
            timestamps=timestamps,
            float32_regions=True,
            **details,
        )
        return features

    def __post_init__(self) -> None:
        if self.__dict__.get("_regions") is not None:  # made from arrays (dataclasses.replace)
            super().__post_init__()
            return
        frames = self.codes.shape[0]
        if frames == 0:
            raise ValueError("a video needs at least one frame")
        self.timestamps = np.ascontiguousarray(self.timestamps, dtype=np.float64)
        if self.timestamps.shape != (frames,):
            raise ValueError(f"timestamps must be [{frames}], got {self.timestamps.shape}")
        if self._stored_vectors is not None:
            self._stored_vectors = np.ascontiguousarray(self._stored_vectors, dtype=np.float32)
            if self._stored_vectors.shape != (frames, self._dim):
                raise ValueError(f"frame_vectors must be [{frames}, {self._dim}], got {self._stored_vectors.shape}")
        if self.frame_weights is not None:
            self.frame_weights = np.ascontiguousarray(self.frame_weights, dtype=np.float32)
            if self.frame_weights.shape != (frames,):
                raise ValueError(f"frame_weights must be [{frames}], got {self.frame_weights.shape}")

    @property
    def regions(self) -> np.ndarray:
        regions = self.__dict__.get("_regions")
        if regions is None:
            regions = decode_regions_float32(self.codes, self.steps, self._dim)
            self.__dict__["_regions"] = regions
        return regions

    @regions.setter
    def regions(self, value: np.ndarray | None) -> None:
        self.__dict__["_regions"] = value

    @property
    def frame_vectors(self) -> np.ndarray:
        if self._stored_vectors is None:
            self._stored_vectors = mean_frame_vectors(self.regions)
        return self._stored_vectors

    @frame_vectors.setter
    def frame_vectors(self, value: np.ndarray | None) -> None:
        if value is not None:
            self._stored_vectors = value

    def regions_into(self, destination: torch.Tensor, rows: list[int]) -> None:
        """Codes not yet decoded are decoded straight into `destination` (no float32 copy, no second
        conversion); decoded regions are copied as the float features' are."""
        if self.decoded:
            super().regions_into(destination, rows)
            return
        every = len(rows) == self.num_frames and rows == list(range(len(rows)))
        codes, steps = (self.codes, self.steps) if every else (self.codes[rows], self.steps[rows])
        decode_into(destination, codes, steps)

    def frame_energy(self) -> np.ndarray:
        """From the codes when not decoded: the same value, without making the float32 regions."""
        if self.decoded:
            return super().frame_energy()
        return region_energy(self.codes, self.steps, self._dim).mean(axis=1)

    @property
    def decoded(self) -> bool:
        """Whether the float32 regions have been made (then they are what every reader uses)."""
        return self.__dict__.get("_regions") is not None

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[0]) if not self.decoded else super().num_frames

    @property
    def num_regions(self) -> int:
        return int(self.codes.shape[1]) if not self.decoded else super().num_regions

    @property
    def dim(self) -> int:
        return self._dim if not self.decoded else super().dim


__all__ = [
    "CompactVideoFeatures",
    "CLIP_RMS",
    "decode_into",
    "decode_regions",
    "decode_regions_float32",
    "encode_regions",
    "region_energy",
]
