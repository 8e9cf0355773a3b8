"""Weak and strong video augmentations for self-supervised training (ARCHITECTURE.md section 6).

A view of a clip is two independent choices:
- a temporal plan: which source frames, in which order (`weak_temporal`, `strong_temporal`),
  returned as an index array so that cached per-frame features and teacher vectors can follow
  the same plan without re-decoding anything;
- a spatial transform applied identically to every frame of the view (`weak_spatial`,
  `strong_spatial`): crops, flips, RandAugment-like global transforms, overlays, blur and
  video-in-video.

All spatial work is plain torch on float frames [T, 3, H, W] in [0, 1] (no torchvision), on
whatever device the frames live on. Randomness comes from a `numpy.random.Generator` passed in,
so a seed fixes every view.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as nnf
from pydantic import BaseModel, ConfigDict
from torch import Tensor


class AugmentConfig(BaseModel):
    """Probabilities and strengths; defaults follow the published recipe (the trainer's `augment` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = 224  # side of the square view the encoder sees
    weak_scale: tuple[float, float] = (0.8, 1.0)
    strong_scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    randaug_ops: int = 2
    randaug_magnitude: int = 9  # of 30 bins, as in the usual RandAugment implementation
    overlay_p: float = 0.3
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (1.0, 3.0)
    shuffle_dropout_p: float = 0.5
    fast_forward_p: float = 0.1
    slow_motion_p: float = 0.1
    reverse_p: float = 0.1
    pause_p: float = 0.1
    video_in_video_p: float = 0.3
    video_in_video_scale: tuple[float, float] = (0.3, 0.7)


# ----------------------------------------------------------------------------------------------
# Temporal plans (index arrays into the source frames)


def weak_temporal(num_frames: int, length: int, rng: np.random.Generator, min_fraction: float = 0.75) -> np.ndarray:
    """Temporal crop: a random contiguous stretch covering at least `min_fraction` of the frames,
    at most `length` long (all frames when the clip is that short)."""
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    longest = min(num_frames, length)
    shortest = min(longest, max(1, int(math.ceil(num_frames * min_fraction))))
    size = int(rng.integers(shortest, longest + 1))
    start = int(rng.integers(0, num_frames - size + 1))
    return np.arange(start, start + size)


def temporal_window(num_frames: int, length: int, rng: np.random.Generator) -> tuple[int, int]:
    """[start, stop) of a random window of `length` frames (the whole clip if shorter): both views
    of a sample are planned inside one window so that they overlap in time."""
    if num_frames <= length:
        return 0, num_frames
    start = int(rng.integers(0, num_frames - length + 1))
    return start, start + length


def ensure_min_length(index: np.ndarray, min_frames: int) -> np.ndarray:
    """Repeat entries evenly (order kept) so a plan has at least `min_frames` entries."""
    if len(index) >= min_frames:
        return index
    return index[np.arange(min_frames) * len(index) // min_frames]


def strong_temporal(num_frames: int, length: int, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Temporal crop (or fast-forward), then slow-motion, shuffle-dropout, reverse and pause.

    Indices are into a window of `num_frames`; the result has at most `length` entries
    (repeats allowed) and at least one.
    """
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    index = weak_temporal(num_frames, length, rng, min_fraction=0.5)
    if rng.random() < config.fast_forward_p:
        speed = int(rng.integers(2, 5))  # x2..x4 over the whole window
        index = np.arange(int(rng.integers(0, speed)), num_frames, speed)[: max(1, length)]
    if rng.random() < config.slow_motion_p:
        index = np.repeat(index, int(rng.integers(2, 4)))
    if rng.random() < config.shuffle_dropout_p:
        index = _shuffle_dropout(index, rng)
    if rng.random() < config.reverse_p:
        index = index[::-1]
    if rng.random() < config.pause_p:
        at = int(rng.integers(0, len(index)))
        hold = int(rng.integers(2, max(3, len(index) // 3 + 1)))
        index = np.concatenate([index[:at], np.repeat(index[at : at + 1], hold), index[at + 1 :]])
    if len(index) > length:
        start = int(rng.integers(0, len(index) - length + 1))
        index = index[start : start + length]
    return np.ascontiguousarray(index)


def _shuffle_dropout(index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Drop up to a quarter of the frames, then swap a few short neighbouring runs."""
    index = index.copy()
    if len(index) >= 4:
        keep = rng.random(len(index)) >= rng.uniform(0.0, 0.25)
        keep[int(rng.integers(0, len(index)))] = True
        index = index[keep]
    for _ in range(int(rng.integers(1, 3))):
        if len(index) < 4:
            break
        run = int(rng.integers(1, max(2, len(index) // 4) + 1))
        first = int(rng.integers(0, len(index) - 2 * run + 1))
        a, b = index[first : first + run].copy(), index[first + run : first + 2 * run].copy()
        index[first : first + run], index[first + run : first + 2 * run] = b, a
    return index


# ----------------------------------------------------------------------------------------------
# Spatial transforms on float frames [T, 3, H, W] in [0, 1]


def to_float_frames(frames: np.ndarray | Tensor, device: torch.device | str = "cpu") -> Tensor:
    """uint8 [T, H, W, 3] (numpy or torch) -> float [T, 3, H, W] in [0, 1] on `device`."""
    tensor = (
        torch.from_numpy(np.array(frames)) if isinstance(frames, np.ndarray) else frames
    )  # copies a read-only memmap
    tensor = tensor.to(device, non_blocking=True)
    if tensor.dim() != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {tuple(tensor.shape)}")
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def random_resized_crop(
    frames: Tensor, size: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> Tensor:
    """One crop box (area fraction `scale`, aspect `ratio`) for all frames, resized to size x size."""
    height, width = frames.shape[-2:]
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            break
    else:  # fall back to the central square
        h = w = min(height, width)
        top, left = (height - h) // 2, (width - w) // 2
    crop = frames[..., top : top + h, left : left + w]
    return nnf.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def center_square(frames: Tensor, size: int) -> Tensor:
    """The un-augmented view: the central square, resized to size x size."""
    height, width = frames.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = frames[..., top : top + side, left : left + side]
    if side == size:
        return crop.contiguous()
    return nnf.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def weak_spatial(frames: Tensor, config: AugmentConfig, rng: np.random.Generator) -> Tensor:
    """Random resized crop (scale 0.8-1) and horizontal flip."""
    view = random_resized_crop(frames, config.size, config.weak_scale, config.ratio, rng)
    if rng.random() < config.flip_p:
        view = view.flip(-1)
    return view


def strong_spatial(
    frames: Tensor,
    config: AugmentConfig,
    rng: np.random.Generator,
    other: Tensor | None = None,
) -> Tensor:
    """Crop + flip, RandAugment (2 ops), overlay (p=0.3), blur (p=0.5), and, when `other` frames
    are given, video-in-video: the caller draws that decision (p=0.3) because it changes labels.
    """
    view = random_resized_crop(frames, config.size, config.strong_scale, config.ratio, rng)
    if rng.random() < config.flip_p:
        view = view.flip(-1)
    view = rand_augment(view, config.randaug_ops, config.randaug_magnitude, rng)
    if other is not None:
        view = video_in_video(view, other, config, rng)
    if rng.random() < config.overlay_p:
        view = overlay(view, rng)
    if rng.random() < config.blur_p:
        view = gaussian_blur(view, rng.uniform(*config.blur_sigma))
    return view.clamp_(0.0, 1.0)


def video_in_video(host: Tensor, other: Tensor, config: AugmentConfig, rng: np.random.Generator) -> Tensor:
    """Paste one video, scaled by 0.3-0.7, into the other at a random place.

    Which of the two is the background is random, so the clip appears both as a small inset and
    as a frame with foreign content on top. `other` is float [T', 3, H', W']; it loops in time to
    cover the host's length.
    """
    size = host.shape[-1]
    other = _fit_length(other, host.shape[0])
    if rng.random() < 0.5:
        host, other = center_square(other, size), host
    scale = rng.uniform(*config.video_in_video_scale)
    side = max(8, int(round(size * scale)))
    inset = center_square(other, side)
    top = int(rng.integers(0, host.shape[-2] - side + 1))
    left = int(rng.integers(0, host.shape[-1] - side + 1))
    result = host.clone()
    result[..., top : top + side, left : left + side] = inset
    return result


def _fit_length(frames: Tensor, length: int) -> Tensor:
    if frames.shape[0] == length:
        return frames
    index = torch.arange(length, device=frames.device) % frames.shape[0]
    return frames[index]


# RandAugment ---------------------------------------------------------------------------------

_RANDAUG_OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)


def rand_augment(frames: Tensor, ops: int, magnitude: int, rng: np.random.Generator, bins: int = 31) -> Tensor:
    """`ops` transforms drawn uniformly from the usual RandAugment list, at `magnitude` of `bins - 1`.

    Signed transforms pick their sign at random. Magnitude ranges follow the common
    implementation (shear 0.3, translate 0.45 of the side, rotate 30 degrees, enhance 0.9,
    posterize down to 4 bits, solarize threshold down to 0).
    """
    level = magnitude / (bins - 1)
    for _ in range(ops):
        name = _RANDAUG_OPS[int(rng.integers(0, len(_RANDAUG_OPS)))]
        sign = 1.0 if rng.random() < 0.5 else -1.0
        frames = apply_op(frames, name, level, sign)
    return frames


def apply_op(frames: Tensor, name: str, level: float, sign: float = 1.0) -> Tensor:
    """One RandAugment transform at strength `level` in [0, 1]."""
    if name == "identity":
        return frames
    if name == "shear_x":
        return _affine(frames, shear=(sign * 0.3 * level, 0.0))
    if name == "shear_y":
        return _affine(frames, shear=(0.0, sign * 0.3 * level))
    if name == "translate_x":
        return _affine(frames, translate=(sign * 0.45 * level, 0.0))
    if name == "translate_y":
        return _affine(frames, translate=(0.0, sign * 0.45 * level))
    if name == "rotate":
        return _affine(frames, angle=sign * 30.0 * level)
    if name == "brightness":
        return _blend(frames, torch.zeros_like(frames), 1.0 + sign * 0.9 * level)
    if name == "color":
        return _blend(frames, _grayscale(frames).expand_as(frames), 1.0 + sign * 0.9 * level)
    if name == "contrast":
        mean = _grayscale(frames).mean(dim=(-3, -2, -1), keepdim=True)
        return _blend(frames, mean.expand_as(frames), 1.0 + sign * 0.9 * level)
    if name == "sharpness":
        return _blend(frames, _smooth(frames), 1.0 + sign * 0.9 * level)
    if name == "posterize":
        bits = int(8 - round(level * 4))
        shift = 8 - bits
        quantised = (frames * 255).round().to(torch.uint8).bitwise_right_shift(shift).bitwise_left_shift(shift)
        return quantised.float() / 255.0
    if name == "solarize":
        threshold = 1.0 - level
        return torch.where(frames >= threshold, 1.0 - frames, frames)
    if name == "autocontrast":
        low = frames.amin(dim=(-2, -1), keepdim=True)
        high = frames.amax(dim=(-2, -1), keepdim=True)
        scale = torch.where(high > low, 1.0 / (high - low).clamp(min=1e-6), torch.ones_like(high))
        return torch.where(high > low, (frames - low) * scale, frames)
    if name == "equalize":
        return equalize(frames)
    raise ValueError(f"unknown augmentation {name!r}")


def _blend(frames: Tensor, other: Tensor, factor: float) -> Tensor:
    return (other + factor * (frames - other)).clamp(0.0, 1.0)


def _grayscale(frames: Tensor) -> Tensor:
    weights = frames.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (frames * weights).sum(dim=1, keepdim=True)


def _smooth(frames: Tensor) -> Tensor:
    kernel = frames.new_tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = kernel.view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    smoothed = nnf.conv2d(nnf.pad(frames, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return smoothed


def _affine(
    frames: Tensor,
    angle: float = 0.0,
    translate: tuple[float, float] = (0.0, 0.0),
    shear: tuple[float, float] = (0.0, 0.0),
) -> Tensor:
    """Rotate (degrees), translate (fraction of the side) and shear about the centre; black fill."""
    theta = math.radians(angle)
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    shearing = torch.tensor([[1.0, shear[0]], [shear[1], 1.0]])
    linear = rotation @ shearing
    # affine_grid maps output coordinates to input coordinates in [-1, 1]: use the inverse.
    inverse = torch.linalg.inv(linear)
    shift = -inverse @ torch.tensor([2 * translate[0], 2 * translate[1]])
    matrix = torch.cat([inverse, shift.view(2, 1)], dim=1).to(frames)
    grid = nnf.affine_grid(matrix.expand(frames.shape[0], 2, 3), list(frames.shape), align_corners=False)
    return nnf.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def equalize(frames: Tensor) -> Tensor:
    """Histogram equalisation per frame and channel (256 bins), as image libraries do it."""
    count, channels, height, width = frames.shape
    values = (frames * 255).round().long().clamp(0, 255).reshape(count * channels, height * width)
    histogram = torch.zeros(count * channels, 256, device=frames.device)
    histogram.scatter_add_(1, values, torch.ones_like(values, dtype=histogram.dtype))
    cdf = histogram.cumsum(dim=1)
    cdf_min = torch.where(histogram > 0, cdf, torch.full_like(cdf, float("inf"))).amin(dim=1, keepdim=True)
    total = cdf[:, -1:]
    denominator = (total - cdf_min).clamp(min=1.0)
    lut = ((cdf - cdf_min) / denominator * 255).clamp(0, 255)
    flat = (total == cdf_min).expand_as(lut)  # single-colour channel: leave it as it is
    lut = torch.where(flat, torch.arange(256, device=frames.device, dtype=lut.dtype).expand_as(lut), lut)
    equalised = lut.gather(1, values).view(count, channels, height, width)
    return equalised / 255.0


# Blur ----------------------------------------------------------------------------------------


def gaussian_blur(frames: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with a kernel of +-3 sigma."""
    radius = max(1, int(math.ceil(3 * sigma)))
    coords = torch.arange(-radius, radius + 1, device=frames.device, dtype=frames.dtype)
    kernel = torch.exp(-(coords**2) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    channels = frames.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    padded = nnf.pad(frames, (radius, radius, 0, 0), mode="reflect" if frames.shape[-1] > radius else "replicate")
    blurred = nnf.conv2d(padded, horizontal, groups=channels)
    padded = nnf.pad(blurred, (0, 0, radius, radius), mode="reflect" if frames.shape[-2] > radius else "replicate")
    return nnf.conv2d(padded, vertical, groups=channels)


# Overlays: text-like strings and emoji-like shapes -------------------------------------------

# A 5x7 bitmap font for a handful of glyphs; enough to look like captions and watermarks.
_GLYPHS = {
    "A": "01110100011000111111100011000110001",
    "B": "11110100011000111110100011000111110",
    "C": "01110100011000010000100001000101110",
    "D": "11110100011000110001100011000111110",
    "E": "11111100001000011110100001000011111",
    "H": "10001100011000111111100011000110001",
    "I": "01110001000010000100001000010001110",
    "K": "10001100101010011000101001001010001",
    "L": "10000100001000010000100001000011111",
    "M": "10001110111010110101100011000110001",
    "N": "10001110011010110011100011000110001",
    "O": "01110100011000110001100011000101110",
    "P": "11110100011000111110100001000010000",
    "R": "11110100011000111110101001001010001",
    "S": "01111100001000001110000010000111110",
    "T": "11111001000010000100001000010000100",
    "V": "10001100011000110001100010101000100",
    "W": "10001100011000110101101011101110001",
    "X": "10001100010101000100010101000110001",
    "Y": "10001100010101000100001000010000100",
    "0": "01110100011001110101110011000101110",
    "1": "00100011000010000100001000010001110",
    "2": "01110100010000100010001000100011111",
    "4": "00010001100101010010111110001000010",
    "7": "11111000010001000100010000100001000",
    "9": "01110100011000101111000010001001100",
    "@": "01110100011011110101101111000001110",
    "#": "01010010101111101010111110101001010",
}
_GLYPH_NAMES = tuple(_GLYPHS)


def _text_mask(text: str, scale: int) -> np.ndarray:
    cells = [np.array([int(bit) for bit in _GLYPHS[ch]], dtype=bool).reshape(7, 5) for ch in text]
    spaced = [np.pad(cell, ((0, 0), (0, 1))) for cell in cells]
    mask = np.concatenate(spaced, axis=1)
    return np.kron(mask, np.ones((scale, scale), dtype=bool))


def _emoji_mask(side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A face-like disc with eyes and a mouth (or a star), as (shape mask, feature mask)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / max(side - 1, 1) * 2 - 1
    radius = np.hypot(xx, yy)
    if rng.random() < 0.7:
        disc = radius <= 1.0
        eyes = (np.hypot(xx - 0.35, yy + 0.3) < 0.15) | (np.hypot(xx + 0.35, yy + 0.3) < 0.15)
        mouth = (np.abs(radius - 0.55) < 0.1) & (yy > 0.15)
        return disc, eyes | mouth
    angle = np.arctan2(yy, xx)
    star = radius <= 0.55 + 0.45 * np.cos(5 * angle) ** 2
    return star, np.zeros_like(star)


def overlay(frames: Tensor, rng: np.random.Generator) -> Tensor:
    """Draw a caption-like string or an emoji-like shape, static over all frames."""
    size = frames.shape[-1]
    result = frames.clone()
    colour = torch.as_tensor(rng.random(3), dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    opacity = float(rng.uniform(0.6, 1.0))
    if rng.random() < 0.5:
        text = "".join(_GLYPH_NAMES[int(i)] for i in rng.integers(0, len(_GLYPH_NAMES), int(rng.integers(3, 10))))
        scale = int(rng.integers(1, max(2, size // 60) + 1))
        mask = _text_mask(text, scale)
        if mask.shape[1] > size:
            mask = mask[:, :size]
        second = None
    else:
        side = int(rng.integers(size // 8, size // 3 + 1))
        mask, second = _emoji_mask(side, rng)
    height, width = mask.shape
    top = int(rng.integers(0, size - height + 1))
    left = int(rng.integers(0, size - width + 1))
    region = result[..., top : top + height, left : left + width]
    shape = torch.as_tensor(mask, device=frames.device).view(1, 1, height, width).to(frames.dtype) * opacity
    region.mul_(1 - shape).add_(colour * shape)
    if second is not None and second.any():
        dark = torch.as_tensor(second, device=frames.device).view(1, 1, height, width).to(frames.dtype)
        region.mul_(1 - dark)
    return result
