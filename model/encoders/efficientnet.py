"""EfficientNet-Lite0 as a multi-stage feature extractor.

The model code comes from the `efficientnet-lite-pytorch` package; this module only walks
its blocks and returns the maps at the end of the stride-8, stride-16 and stride-32 stages
plus the 1280-d head (before global pooling), which regional pooling then turns into
region vectors. The classifier is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

if TYPE_CHECKING:
    from efficientnet_lite_pytorch import EfficientNet

# Widths of the returned maps: last stride-8 block, last stride-16 block, last stride-32
# block, and the 1x1 head.
STAGE_CHANNELS: tuple[int, ...] = (40, 112, 320, 1280)
STAGE_STRIDES: tuple[int, ...] = (8, 16, 32)


class EfficientNetLiteStages(nn.Module):
    """Runs an EfficientNet-Lite trunk and returns its intermediate stage maps."""

    def __init__(self, net: EfficientNet, stage_ends: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_stem = net._conv_stem
        self.bn_stem = net._bn0
        self.blocks = net._blocks
        self.conv_head = net._conv_head
        self.bn_head = net._bn1
        self.act = nn.ReLU6()  # the Lite variants use ReLU6 everywhere
        self.stage_ends = stage_ends

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act(self.bn_stem(self.conv_stem(x)))
        stages = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.stage_ends:
                stages.append(x)
        stages.append(self.act(self.bn_head(self.conv_head(x))))
        return stages

    def fuse_batch_norms(self) -> EfficientNetLiteStages:
        """Fold every BatchNorm into the convolution before it, for inference.

        Saves eager PyTorch a full pass over each activation map; onnxruntime folds them
        itself. The block code calls its BatchNorms by name, so they become identities.
        """
        _fuse(self, "conv_stem", "bn_stem")
        for block in self.blocks:
            if block._block_args.expand_ratio != 1:  # else the block has no expansion conv
                _fuse(block, "_expand_conv", "_bn0")
            _fuse(block, "_depthwise_conv", "_bn1")
            _fuse(block, "_project_conv", "_bn2")
        _fuse(self, "conv_head", "bn_head")
        return self


def _fuse(parent: nn.Module, conv: str, norm: str) -> None:
    setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv).eval(), getattr(parent, norm).eval()))
    setattr(parent, norm, nn.Identity())


def _stage_ends(net: EfficientNet, strides: tuple[int, ...]) -> tuple[int, ...]:
    """Index of the last block at each wanted cumulative stride (the stem has stride 2)."""
    stride = 2
    last_at: dict[int, int] = {}
    for index, block in enumerate(net._blocks):
        block_stride = block._block_args.stride
        stride *= block_stride[0] if isinstance(block_stride, (list, tuple)) else block_stride
        last_at[stride] = index
    return tuple(last_at[s] for s in strides)


def build_efficientnet_lite0(state_dict: dict[str, torch.Tensor], image_size: int) -> EfficientNetLiteStages:
    """EfficientNet-Lite0 stages with the given ImageNet state_dict loaded (strict)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    net.load_state_dict(state_dict, strict=True)
    return EfficientNetLiteStages(net, _stage_ends(net, STAGE_STRIDES))
