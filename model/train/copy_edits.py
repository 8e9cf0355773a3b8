"""Copy edits of single frames, for training the frame descriptor (model.train.descriptor).

Each edit takes a whole decoded frame (float [3, H, W] in [0, 1], any aspect) and returns a new
one, so the encoder then sees it as the service sees a copy: short side scaled to 256 and the
central square cropped. The edits are the kinds of copy the service must find: crop, flip,
grayscale, blur, colour, overlaid text, emoji and logo, borders, picture-in-picture in both
directions, low resolution and heavy JPEG compression, drawn one to three at a time.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image
from torch import Tensor

from model.train.augment import _grayscale, gaussian_blur, overlay

SHORT_SIDE = 256  # what the service decodes to (model.video.decode_video's default)

Edit = Callable[[Tensor, np.random.Generator, Tensor], Tensor]


def resize(frame: Tensor, height: int, width: int) -> Tensor:
    """[3, H, W] -> [3, height, width], bilinear with antialiasing."""
    return nnf.interpolate(
        frame[None], size=(max(1, height), max(1, width)), mode="bilinear", align_corners=False, antialias=True
    )[0]


def to_short_side(frame: Tensor, side: int = SHORT_SIDE) -> Tensor:
    """Scale so the short side is `side`, as the decoder does with every video."""
    height, width = frame.shape[-2:]
    scale = side / min(height, width)
    return resize(frame, round(height * scale), round(width * scale))


def crop(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """Keep 45 to 90 percent of each side, anywhere in the frame."""
    height, width = frame.shape[-2:]
    h, w = (max(8, int(side * rng.uniform(0.45, 0.9))) for side in (height, width))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return frame[:, top : top + h, left : left + w]


def grayscale(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    return _grayscale(frame[None])[0].expand(3, -1, -1).contiguous()


def blur(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """A Gaussian blur, or an area shrink and smooth enlarge (what a soft re-upload looks like)."""
    if rng.random() < 0.5:
        return gaussian_blur(frame[None], float(rng.uniform(1.0, 4.0)))[0]
    return low_resolution(frame, rng, other, (2.5, 7.0))


def low_resolution(
    frame: Tensor, rng: np.random.Generator, other: Tensor, factor: tuple[float, float] = (1.5, 3.0)
) -> Tensor:
    height, width = frame.shape[-2:]
    shrink = float(rng.uniform(*factor))
    small = resize(frame, round(height / shrink), round(width / shrink))
    return nnf.interpolate(small[None], size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def colour(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """Hue turn, saturation, contrast, brightness and gamma together."""
    angle = math.radians(rng.uniform(10, 70) * rng.choice([-1, 1]))
    cos, sin = math.cos(angle), math.sin(angle)
    k = torch.full((3, 3), 1 / 3)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3)
    rotation = cos * torch.eye(3) + (1 - cos) * k + sin * cross
    matrix = (k + rng.uniform(0.3, 1.7) * (rotation - k)) * rng.uniform(0.6, 1.4)
    mixed = torch.einsum("ij,jhw->ihw", matrix.to(frame), frame - 0.5) + 0.5 + rng.uniform(-0.15, 0.15)
    return mixed.clamp(0, 1) ** float(rng.uniform(0.6, 1.6))


def text_or_emoji(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """1 to 3 captions or emoji-like shapes over the central square (where the encoder looks)."""
    height, width = frame.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    result = frame.clone()
    square = result[None, :, top : top + side, left : left + side]
    for _ in range(int(rng.integers(1, 4))):
        square = overlay(square, rng)
    result[:, top : top + side, left : left + side] = square[0]
    return result


def logo_and_caption(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """A semi-opaque coloured tile in a corner and an opaque caption bar along an edge."""
    height, width = frame.shape[-2:]
    result = frame.clone()
    side = max(8, int(min(height, width) * rng.uniform(0.15, 0.3)))
    tile = torch.as_tensor(rng.random(3), dtype=frame.dtype).view(3, 1, 1).expand(3, side, side).clone()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    for _ in range(3):
        cy, cx, r = rng.uniform(0.2, 0.8, size=3) * np.array([1, 1, 0.4])
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        tile[:, disc] = torch.as_tensor(rng.random(3), dtype=frame.dtype).view(3, 1)
    y = int(rng.choice([0, height - side])) if height > side else 0
    x = int(rng.choice([0, width - side])) if width > side else 0
    alpha = float(rng.uniform(0.5, 0.9))
    result[:, y : y + side, x : x + side] = (1 - alpha) * result[:, y : y + side, x : x + side] + alpha * tile
    bar = max(4, int(height * rng.uniform(0.08, 0.18)))
    bar_y = height - bar if y == 0 else 0
    result[:, bar_y : bar_y + bar] = torch.as_tensor(rng.uniform(0, 0.3, 3), dtype=frame.dtype).view(3, 1, 1)
    for _ in range(int(rng.integers(4, 10))):  # "words": light marks on the dark bar
        bx, bw = int(rng.integers(0, width)), int(rng.integers(width // 40 + 1, width // 8 + 2))
        result[:, bar_y + bar // 3 : bar_y + 2 * bar // 3, bx : bx + bw] = float(rng.uniform(0.6, 1.0))
    return result


def border(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """Letterbox, pillarbox or a frame all round, in black or a flat colour, content shrunk a little."""
    height, width = frame.shape[-2:]
    shrink = float(rng.uniform(0.6, 1.0))
    h, w = max(8, round(height * shrink)), max(8, round(width * shrink))
    if rng.random() < 0.5:  # another aspect ratio
        canvas_h, canvas_w = (round(width * 3 / 4), width) if width / height > 1.5 else (height, round(height * 16 / 9))
        scale = min(canvas_h / height, canvas_w / width) * shrink
        h, w = max(8, round(height * scale)), max(8, round(width * scale))
    else:
        canvas_h, canvas_w = height, width
    fill = torch.zeros(3) if rng.random() < 0.6 else torch.as_tensor(rng.random(3), dtype=frame.dtype)
    canvas = fill.view(3, 1, 1).expand(3, canvas_h, canvas_w).clone()
    top, left = int(rng.integers(0, canvas_h - h + 1)), int(rng.integers(0, canvas_w - w + 1))
    canvas[:, top : top + h, left : left + w] = resize(frame, h, w)
    return canvas


def _inset(background: Tensor, inner: Tensor, rng: np.random.Generator, scale: tuple[float, float]) -> Tensor:
    height, width = background.shape[-2:]
    factor = float(rng.uniform(*scale))
    h, w = max(8, round(height * factor)), max(8, round(width * factor))
    result = background.clone()
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    result[:, top : top + h, left : left + w] = resize(inner, h, w)
    return result


def pip_inside(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """This frame shrunk to 30 to 60 percent over unrelated footage (it is the small window)."""
    background = resize(other, *frame.shape[-2:])
    return _inset(background, frame, rng, (0.3, 0.6))


def pip_around(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """Unrelated footage shrunk to 25 to 50 percent over this frame (it is the background)."""
    return _inset(frame, other, rng, (0.25, 0.5))


def jpeg(frame: Tensor, rng: np.random.Generator, other: Tensor) -> Tensor:
    """Heavy JPEG compression (quality 5 to 30): blocking, smearing and colour bleeding like a harsh re-encode."""
    pixels = (frame.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(rng.integers(5, 31)))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).float() / 255.0


# Edits drawn for a view (flip is separate: its probability is the experiment's own setting).
EDITS: dict[str, Edit] = {
    "crop": crop,
    "grayscale": grayscale,
    "blur": blur,
    "low-resolution": low_resolution,
    "colour": colour,
    "text-emoji": text_or_emoji,
    "logo-caption": logo_and_caption,
    "border": border,
    "pip-inside": pip_inside,
    "pip-around": pip_around,
    "jpeg": jpeg,
}
_PIP = ("pip-inside", "pip-around")


def copy_view(
    frame: np.ndarray, other: np.ndarray, rng: np.random.Generator, flip_p: float = 0.3
) -> tuple[np.ndarray, list[str]]:
    """A copy of uint8 `frame` [H, W, 3] with 1 to 3 random edits (`other`: unrelated footage for
    picture-in-picture), short side SHORT_SIDE; returns it with the edits' names, in order.

    JPEG, when drawn, comes last, as a re-encode does; picture-in-picture is drawn at most once.
    """
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 255.0
    second = torch.from_numpy(np.ascontiguousarray(other)).permute(2, 0, 1).float() / 255.0
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    names = list(rng.choice(list(EDITS), size=count, replace=False))
    if all(name in names for name in _PIP):
        names.remove(_PIP[int(rng.integers(0, 2))])
    names.sort(key=lambda name: name == "jpeg")
    if rng.random() < flip_p:
        names.insert(0, "flip")
    for name in names:
        image = image.flip(-1) if name == "flip" else EDITS[name](image, rng, second)
    image = to_short_side(image.clamp(0, 1))
    return (image.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy(), names
