"""3D-UNet as in the RANP reference (Wolny et al.'s pytorch-3dunet with its DoubleConv).

Every conv is 3x3x3 with padding 1 and no bias, followed by BatchNorm3d and ReLU. Level
widths are ``c_i = min(f0 * 2^i, 1024)``. Encoder level 0 convolves ``in -> max(c0 / 2,
in) -> c0``; later levels max-pool by 2, then ``c_{i-1} -> max(c_i / 2, c_{i-1}) -> c_i``.
A decoder level upsamples by nearest-neighbour interpolation to its skip's size, reads
``cat([skip, up])`` (skip channels first) and convolves ``c_j + c_{j+1} -> c_j -> c_j``.
The head is a 1x1x1 conv with bias; the ShapeNet model applies a softmax over classes at
inference (the paper's memory figure counts its output).

Four levels give the paper's 15-layer model, six levels its 23-layer one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv_bn_relu

#: Widest level: the 23-layer model's two deepest levels both have 1024 channels.
MAX_WIDTH = 1024


class DoubleConv(nn.Sequential):
    """Two conv-BN-ReLU units: ``conv1`` (in -> middle) and ``conv2`` (middle -> out)."""

    def __init__(self, in_channels: int, middle_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module("conv1", conv_bn_relu(in_channels, middle_channels))
        self.add_module("conv2", conv_bn_relu(middle_channels, out_channels))


class UNet3D(nn.Module):
    """The reference 3D-UNet.

    Args:
        in_channels: Input channels (1 for ShapeNet voxels, 4 MRI modalities for BraTS).
        classes: Output channels of the 1x1x1 head.
        base_width: f0, the width of level 0.
        levels: Encoder levels: 4 for the 15-layer model, 6 for the 23-layer one.
        softmax: Apply a softmax over classes in eval mode.
    """

    def __init__(
        self,
        in_channels: int,
        classes: int,
        *,
        base_width: int = 64,
        levels: int = 4,
        softmax: bool = False,
    ) -> None:
        super().__init__()
        widths = [min(base_width * 2**level, MAX_WIDTH) for level in range(levels)]
        self.widths = tuple(widths)
        encoders = []
        previous = in_channels
        for width in widths:
            encoders.append(DoubleConv(previous, max(width // 2, previous), width))
            previous = width
        self.encoders = nn.ModuleList(encoders)
        self.pools = nn.ModuleList(nn.MaxPool3d(2) for _ in widths[1:])
        self.decoders = nn.ModuleList(
            DoubleConv(widths[level] + widths[level + 1], widths[level], widths[level])
            for level in reversed(range(levels - 1))
        )
        self.head = nn.Conv3d(widths[0], classes, kernel_size=1)
        self.final_activation = nn.Softmax(dim=1) if softmax else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a volume: ``(N, in, D, H, W) -> (N, classes, D, H, W)``."""
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                x = self.pools[level - 1](x)
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            up = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = decoder(torch.cat([skip, up], dim=1))
        x = self.head(x)
        if self.final_activation is not None and not self.training:
            x = self.final_activation(x)
        return x
