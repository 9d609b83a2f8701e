"""I3D (Inception-v1 inflated to 3D) as in piergiaj/pytorch-i3d, the RANP reference's copy.

Every unit pads its input TF-style ("SAME") with an explicit pad computed from the input
size, then convolves without padding, applies BatchNorm3d (eps 1e-3) and ReLU; the max-pools
pad the same way. The ReLU is functional in the reference (``F.relu``), so its counter
leaves the ReLU outputs out of the memory figure; an ONNX graph cannot tell the two apart.
The head average-pools (2, 7, 7) with stride 1 (what remains of the volume if that is
smaller: the reference fails on inputs under 9 x 193 x 193), applies Dropout(0.5) and a
1x1x1 conv with bias (the logits), then squeezes to ``(N, classes)``. 58 convs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import scale_width

Triple = tuple[int, int, int]

#: Inception modules in order: name and branch widths
#: (1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | pool -> 1x1), each preceded by its max-pool if any.
MODULES: tuple[tuple[str, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
#: The head's average pool; smaller inputs pool the whole remaining volume instead.
AVG_POOL: Triple = (2, 7, 7)
#: Max-pools placed before the named module: (kernel, stride).
POOLS_BEFORE: dict[str, tuple[str, Triple, Triple]] = {
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


def same_padding(size: Sequence[int], kernel: Triple, stride: Triple) -> tuple[int, ...]:
    """Return TF "SAME" padding for ``F.pad`` (last axis first) of a (T, H, W) input."""
    pads: list[int] = []
    for length, k, s in reversed(list(zip(size, kernel, stride))):
        total = max(k - s, 0) if length % s == 0 else max(k - length % s, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class MaxPool3dSamePadding(nn.MaxPool3d):
    """MaxPool3d after SAME padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, then pool."""
        kernel = _triple(self.kernel_size)
        stride = _triple(self.stride)
        x = F.pad(x, same_padding([int(d) for d in x.shape[2:]], kernel, stride))
        return super().forward(x)


class Unit3D(nn.Module):
    """SAME padding, Conv3d (no padding), optional BatchNorm3d (eps 1e-3), optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        *,
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.relu = relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, convolve, normalise, rectify."""
        x = F.pad(x, same_padding([int(d) for d in x.shape[2:]], self.kernel, self.stride))
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: b0 | b1a -> b1b | b2a -> b2b | b3a -> b3b."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=0)
        self.b3b = Unit3D(in_channels, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the four branches."""
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))],
            dim=1,
        )


class InceptionI3d(nn.Module):
    """I3D for clips ``(N, 3, T, H, W)`` (224 x 224 in the paper).

    Args:
        classes: Output classes.
        in_channels: Input channels.
        width_mult: Multiplier of every conv's width.
    """

    def __init__(self, classes: int, *, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()

        def scaled(channels: int) -> int:
            return scale_width(channels, width_mult)

        self.Conv3d_1a_7x7 = Unit3D(in_channels, scaled(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(scaled(64), scaled(64))
        self.Conv3d_2c_3x3 = Unit3D(scaled(64), scaled(192), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))
        channels = scaled(192)
        for name, widths in MODULES:
            if name in POOLS_BEFORE:
                pool_name, kernel, stride = POOLS_BEFORE[name]
                self.add_module(pool_name, MaxPool3dSamePadding(kernel_size=kernel, stride=stride))
            branch = [scaled(w) for w in widths]
            self.add_module(name, InceptionModule(channels, branch))
            channels = branch[0] + branch[2] + branch[4] + branch[5]
        self.avg_pool = nn.AvgPool3d(kernel_size=AVG_POOL, stride=(1, 1, 1))
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(channels, classes, batch_norm=False, relu=False, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, classes)`` (``(N, classes, T', H', W')`` on a larger input)."""
        for name, module in self.named_children():
            if name == "avg_pool":
                break
            x = module(x)
        window = tuple(min(k, int(n)) for k, n in zip(AVG_POOL, x.shape[2:]))
        # Inputs smaller than the paper's (T < 9 or H, W < 193) pool what is left.
        x = self.avg_pool(x) if window == AVG_POOL else F.avg_pool3d(x, window, stride=1)
        x = self.logits(self.dropout(x))
        # The reference squeezes the pooled axes; a flatten says the same without the
        # If node that torchscript makes of a squeeze.
        return torch.flatten(x, 1) if x.shape[2:].numel() == 1 else x


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    a, b, c = value
    return (int(a), int(b), int(c))
