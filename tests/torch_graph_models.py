"""Small torch modules for the torch-evaluator tests: the building blocks of 3D CNNs."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _randomize_statistics(module: nn.Module, seed: int) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            channels = layer.num_features
            with torch.no_grad():
                layer.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                layer.weight.copy_(1 + 0.1 * torch.randn(channels, generator=generator))
                layer.bias.copy_(0.1 * torch.randn(channels, generator=generator))
    return module


def conv_bn_relu(cin: int, cout: int, **options: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1, bias=False, **options),
                         nn.BatchNorm3d(cout), nn.ReLU())  # fmt: skip


class ConvStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(2, 4, 3, padding=1)
        self.b = nn.Conv3d(4, 6, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.c = nn.Conv3d(6, 6, 3, dilation=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(F.leaky_relu(self.b(torch.relu(self.a(x))), 0.1))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.grouped = nn.Conv3d(2, 8, 3, groups=2, padding=1)
        self.depthwise = nn.Conv3d(8, 8, 3, groups=8, padding=1, bias=False)
        self.pointwise = nn.Conv3d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(F.relu6(self.depthwise(F.relu6(self.grouped(x)))))


class Transposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose3d(4, 3, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.conv(x)))


class TinyUNet(nn.Module):
    """Two levels: conv-BN-ReLU blocks, max pooling, nearest upsampling, skip concat."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.enc = nn.Sequential(conv_bn_relu(2, 4), conv_bn_relu(4, 6))
        self.pool = nn.MaxPool3d(2)
        self.bottom = nn.Sequential(conv_bn_relu(6, 6), conv_bn_relu(6, 8))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.Sequential(conv_bn_relu(6 + 8, 6), conv_bn_relu(6, 6))
        self.head = nn.Conv3d(6, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        low = self.up(self.bottom(self.pool(skip)))
        return self.head(self.dec(torch.cat([skip, low], dim=1)))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(2, 6)
        self.conv1 = conv_bn_relu(6, 6)
        self.conv2 = nn.Conv3d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return torch.relu(y + self.bn2(self.conv2(self.conv1(y))))


class SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 8, 3, padding=1)
        self.reduce = nn.Linear(8, 2)
        self.expand = nn.Linear(2, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(y.mean(dim=(2, 3, 4))))))
        return y * gate[:, :, None, None, None]


class LinearHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)
        self.pool = nn.AvgPool3d(2)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(4 * 2 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(F.elu(self.conv(x)))
        return self.fc(self.dropout(torch.flatten(y, 1)))


class Normalized(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 8, 3, padding=1)
        self.norm = nn.InstanceNorm3d(8, affine=True) if kind == "instance" else nn.GroupNorm(2, 8)
        self.out = nn.Conv3d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.norm(self.conv(x))))


def _normalized(kind: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        module = Normalized(kind)
        with torch.no_grad():  # affine parameters away from 1 and 0, to see their gradients
            module.norm.weight.add_(0.1 * torch.randn(8))
            module.norm.bias.add_(0.1 * torch.randn(8))
        return module

    return build


#: name -> (builder, input shape); BatchNorm statistics are randomised where they exist.
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "conv_stack": (ConvStack, (2, 2, 4, 6, 6)),
    "grouped": (Grouped, (2, 2, 4, 4, 4)),
    "conv_transpose": (Transposed, (2, 2, 4, 4, 6)),
    "unet": (TinyUNet, (2, 2, 4, 4, 4)),
    "residual": (Residual, (2, 2, 3, 4, 4)),
    "squeeze_excite": (SqueezeExcite, (2, 2, 3, 4, 4)),
    "linear_head": (LinearHead, (2, 2, 4, 4, 4)),
    "instance_norm": (_normalized("instance"), (2, 2, 3, 4, 4)),
    "group_norm": (_normalized("group"), (2, 2, 3, 4, 4)),
}


def build(
    name: str, seed: int = 0, fresh_statistics: bool = False
) -> tuple[nn.Module, torch.Tensor]:
    """The named module (eval mode) and an input for it, both from ``seed``."""
    builder, shape = MODELS[name]
    torch.manual_seed(seed)
    module = builder()
    if not fresh_statistics:
        _randomize_statistics(module, seed)
    return module.eval(), torch.randn(*shape)
