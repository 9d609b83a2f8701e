"""3D ResNet-18 of Hara et al. (3D-ResNets-PyTorch; also in Efficient-3DCNNs).

Stem: 7x7x7 conv stride (1, 2, 2) padding 3, BN, ReLU, max-pool 3x3x3 stride 2 padding 1.
Four stages of two basic blocks (two 3x3x3 convs with BN; ReLU after the first and after
the residual add) at widths 64, 128, 256, 512, stages 2-4 starting with stride 2. The
shortcut is Hara's type A, the default for ResNet-18: a stride-s identity (average pool of
kernel 1) zero-padded on channels, so the model has 17 convs and no projection convs. Head:
average pool over the whole remaining volume and a Linear classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import scale_width

#: Widths of the four stages.
STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


def _conv3x3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3x3 convs with BN; type-A shortcut when the stride or the width changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.stride = stride

    @property
    def extra_channels(self) -> int:
        """Zero channels the shortcut appends: the output's width less the input's.

        Read from the convolutions, so that a block ``prune_module`` shrank (which updates
        their channel counts) pads by the zero channels it kept.
        """
        return self.conv2.out_channels - self.conv1.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x
        if self.stride != 1 or self.extra_channels:
            residual = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
            residual = F.pad(residual, (0, 0, 0, 0, 0, 0, 0, self.extra_channels))
        return self.relu(out + residual)


class ResNet3D(nn.Module):
    """ResNet-18 for clips ``(N, 3, T, H, W)``.

    Args:
        classes: Output classes.
        in_channels: Input channels.
        width_mult: Multiplier of every conv's width.
    """

    def __init__(self, classes: int, *, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        widths = [scale_width(w, width_mult) for w in STAGE_WIDTHS]
        self.conv1 = nn.Conv3d(
            in_channels, widths[0], 7, stride=(1, 2, 2), padding=(3, 3, 3), bias=False
        )
        self.bn1 = nn.BatchNorm3d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        stages = []
        channels = widths[0]
        for index, width in enumerate(widths):
            blocks = [BasicBlock(channels, width, 1 if index == 0 else 2)]
            blocks += [BasicBlock(width, width) for _ in range(BLOCKS_PER_STAGE - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, classes)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
