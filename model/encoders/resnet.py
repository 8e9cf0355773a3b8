"""ResNet-50 as a multi-stage feature extractor, with torchvision's state_dict layout.

Written here so that torchvision is never needed: the parameter names (conv1, bn1,
layer1..layer4 with Bottleneck blocks conv1..conv3, bn1..bn3, downsample.0/.1) match
torchvision's `resnet50`, so its ImageNet file loads as is. The stride of a
down-sampling block sits on the 3x3 convolution, as in torchvision (ResNet v1.5).
Returns the outputs of layer1..layer4 (256 + 512 + 1024 + 2048 = 3840 channels).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

STAGE_CHANNELS: tuple[int, ...] = (256, 512, 1024, 2048)
_BLOCKS_PER_LAYER = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Stages(nn.Module):
    """The ResNet-50 trunk (no classifier); forward returns [layer1, ..., layer4] maps."""

    layer1: nn.Sequential  # of Bottleneck blocks, set in __init__
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for index, (blocks, width) in enumerate(zip(_BLOCKS_PER_LAYER, (64, 128, 256, 512))):
            stride = 1 if index == 0 else 2
            layer = [Bottleneck(in_channels, width, stride)]
            in_channels = width * Bottleneck.expansion
            layer += [Bottleneck(in_channels, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(x)
        return stages

    def fuse_batch_norms(self) -> ResNet50Stages:
        """Fold every BatchNorm into the convolution before it, for inference (eager speed)."""
        _fuse(self, "conv1", "bn1")
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                for index in (1, 2, 3):
                    _fuse(block, f"conv{index}", f"bn{index}")
                if isinstance(block.downsample, nn.Module):  # None when the block keeps its shape
                    _fuse(block.downsample, "0", "1")
        return self


def _fuse(parent: nn.Module, conv: str, norm: str) -> None:
    setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv).eval(), getattr(parent, norm).eval()))
    setattr(parent, norm, nn.Identity())


def build_resnet50(state_dict: dict[str, torch.Tensor], image_size: int) -> ResNet50Stages:
    """ResNet-50 stages with a torchvision-layout state_dict loaded (the fc head is ignored)."""
    del image_size  # plain padding: any input size works
    trunk = {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
    model = ResNet50Stages()
    model.load_state_dict(trunk, strict=True)
    return model
