"""C3D (Tran et al.) with batch norm, as in Kopuklu et al.'s Efficient-3DCNNs.

Eight 3x3x3 convs (64, 128, 256, 256, 512, 512, 512, 512; with bias, then BatchNorm3d and
ReLU) in five groups, each ending in a max-pool; two fully connected layers of 4096 with
BatchNorm1d, ReLU and Dropout(0.5); a Linear classifier.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .blocks import conv_bn_relu, pooled_size, scale_width

#: Conv widths per group.
GROUPS: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))
#: Max-pool (kernel, stride, padding) ending each group.
POOLS: tuple[tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((2, 2, 2), (1, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ((1, 2, 2), (2, 2, 2), (0, 1, 1)),
)
FC_WIDTH = 4096


def _fully_connected(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            linear=nn.Linear(in_features, out_features),
            bn=nn.BatchNorm1d(out_features),
            relu=nn.ReLU(),
            dropout=nn.Dropout(0.5),
        )
    )


class C3D(nn.Module):
    """C3D for clips ``(N, 3, T, H, W)`` with T >= 16.

    Args:
        classes: Output classes.
        clip_shape: (T, H, W) of the input, which fixes the first FC layer's width.
        in_channels: Input channels.
        width_mult: Multiplier of every conv's and FC layer's width.
    """

    def __init__(
        self,
        classes: int,
        clip_shape: Sequence[int],
        *,
        in_channels: int = 3,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        size = [int(d) for d in clip_shape]
        channels = in_channels
        groups = []
        for widths, (kernel, stride, padding) in zip(GROUPS, POOLS):
            layers: list[nn.Module] = []
            for width in widths:
                out = scale_width(width, width_mult)
                layers += list(conv_bn_relu(channels, out, bias=True).children())
                channels = out
            layers.append(nn.MaxPool3d(kernel, stride=stride, padding=padding))
            groups.append(nn.Sequential(*layers))
            size = [pooled_size(n, k, s, p) for n, k, s, p in zip(size, kernel, stride, padding)]
        self.group1, self.group2, self.group3, self.group4, self.group5 = groups
        if min(size) < 1:
            raise ValueError(f"C3D needs at least 16 frames; clip {tuple(clip_shape)} is too small")
        fc_width = scale_width(FC_WIDTH, width_mult)
        self.fc1 = _fully_connected(channels * size[0] * size[1] * size[2], fc_width)
        self.fc2 = _fully_connected(fc_width, fc_width)
        self.fc = nn.Linear(fc_width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, classes)``."""
        for group in (self.group1, self.group2, self.group3, self.group4, self.group5):
            x = group(x)
        x = torch.flatten(x, 1)
        return self.fc(self.fc2(self.fc1(x)))
