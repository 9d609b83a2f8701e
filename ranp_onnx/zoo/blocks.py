"""Building blocks shared by the zoo's models."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def scale_width(channels: int, width_mult: float) -> int:
    """Return ``channels * width_mult`` rounded, at least 1."""
    return max(1, round(channels * width_mult))


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    padding: int = 1,
    bias: bool = False,
) -> nn.Sequential:
    """Conv3d, BatchNorm3d and ReLU as ``conv``, ``bn`` and ``relu`` submodules."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv3d(in_channels, out_channels, kernel_size, padding=padding, bias=bias),
            bn=nn.BatchNorm3d(out_channels),
            relu=nn.ReLU(inplace=True),
        )
    )


def pooled_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Return the output length of a pooling or convolution window along one axis (floor)."""
    return (size + 2 * padding - kernel) // stride + 1
