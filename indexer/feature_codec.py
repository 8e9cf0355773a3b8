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

import numpy as np

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


__all__ = ["CLIP_RMS", "decode_regions", "decode_regions_float32", "encode_regions"]
