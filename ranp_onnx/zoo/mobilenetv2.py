"""3D MobileNetV2 as in Kopuklu et al.'s Efficient-3DCNNs (the RANP reference's copy).

Stem: 3x3x3 conv stride (1, 2, 2), BN, ReLU6. Inverted residual stages (t, c, n, s); a
block is a pointwise expansion (left out when t = 1), a depthwise 3x3x3 conv and a linear
pointwise projection, each with BN and ReLU6 after the first two; the input is added back
when the stride is 1 and the widths match. Head: 1x1x1 conv to 1280, BN, ReLU6, average
pool over the whole remaining volume, Dropout(0.2), Linear. 52 convs and one Linear.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

#: (expansion t, width c, blocks n, stride s of the first block) per stage.
STAGES: tuple[tuple[int, int, int, tuple[int, int, int]], ...] = (
    (1, 16, 1, (1, 1, 1)),
    (6, 24, 2, (2, 2, 2)),
    (6, 32, 3, (2, 2, 2)),
    (6, 64, 4, (2, 2, 2)),
    (6, 96, 3, (1, 1, 1)),
    (6, 160, 3, (2, 2, 2)),
    (6, 320, 1, (1, 1, 1)),
)
STEM_WIDTH = 32
LAST_WIDTH = 1280


def _conv_bn(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 1,
    stride: tuple[int, int, int] = (1, 1, 1),
    groups: int = 1,
    activation: bool = True,
) -> list[nn.Module]:
    padding = kernel_size // 2
    layers: list[nn.Module] = [
        nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm3d(out_channels),
    ]
    if activation:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    """Expand (if t > 1), depthwise, project; residual add when shapes allow."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: tuple[int, int, int], expansion: int
    ) -> None:
        super().__init__()
        hidden = round(in_channels * expansion)
        self.use_residual = stride == (1, 1, 1) and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn(in_channels, hidden)
        layers += _conv_bn(hidden, hidden, kernel_size=3, stride=stride, groups=hidden)
        layers += _conv_bn(hidden, out_channels, activation=False)
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, plus its input on a residual block."""
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 for clips ``(N, 3, T, H, W)``.

    Args:
        classes: Output classes.
        in_channels: Input channels.
        width_mult: Width multiplier of the stem and the stages; the last conv keeps 1280
            channels unless ``width_mult > 1`` (as in Efficient-3DCNNs).
    """

    def __init__(self, classes: int, *, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        width = max(1, int(STEM_WIDTH * width_mult))
        last = int(LAST_WIDTH * width_mult) if width_mult > 1.0 else LAST_WIDTH
        features: list[nn.Module] = [
            nn.Sequential(*_conv_bn(in_channels, width, kernel_size=3, stride=(1, 2, 2)))
        ]
        for expansion, channels, blocks, stride in STAGES:
            out = max(1, int(channels * width_mult))
            for index in range(blocks):
                features.append(
                    InvertedResidual(width, out, stride if index == 0 else (1, 1, 1), expansion)
                )
                width = out
        features.append(nn.Sequential(*_conv_bn(width, last)))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            OrderedDict(dropout=nn.Dropout(0.2), linear=nn.Linear(last, classes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, classes)``."""
        x = self.features(x)
        x = F.adaptive_avg_pool3d(x, 1)
        return self.classifier(torch.flatten(x, 1))
