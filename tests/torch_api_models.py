"""3D networks written the way users write them, for the PyTorch-first API tests.

None of them is from the zoo: each is a class of its own, so ``prune_module`` must shrink
the user's layers and keep the user's class and forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)
    )


class TinyUNet3D(nn.Module):
    """Two levels, a ConvTranspose up-sampling, skip concatenated first (as in the paper)."""

    def __init__(self, cin: int = 1, classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.enc1 = conv_block(cin, width)
        self.enc2 = conv_block(width, 2 * width)
        self.up = nn.ConvTranspose3d(2 * width, width, 2, stride=2)
        self.dec = conv_block(2 * width, width)
        self.head = nn.Conv3d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc1(x)
        deep = self.enc2(F.max_pool3d(skip, 2))
        return self.head(self.dec(torch.cat([skip, self.up(deep)], dim=1)))


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class ResidualNet3D(nn.Module):
    """A small 3D ResNet: residual additions tie channels; pooled Linear head."""

    def __init__(self, cin: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.stem = conv_block(cin, 8)
        self.block1 = ResidualBlock(8, 8)
        self.block2 = ResidualBlock(8, 16, stride=2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(y, 1), 1))


class FlattenHead3D(nn.Module):
    """Convs, PReLU and InstanceNorm, then a Linear over the flattened volume."""

    def __init__(self, cin: int = 1, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, 8, 3, padding=1)
        self.norm1 = nn.InstanceNorm3d(8, affine=True)
        self.act1 = nn.PReLU(8)
        self.conv2 = nn.Conv3d(8, 12, 3, stride=2, padding=1)
        self.norm2 = nn.InstanceNorm3d(12)
        self.fc1 = nn.Linear(12 * 4 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x))))))
        return self.fc2(F.relu(self.fc1(y.flatten(1))))


class HardCodedChannels(nn.Module):
    """A forward that hard-codes a channel count: cannot be shrunk in place.

    ``batch_from_shape`` reads the batch size from the tensor (``x.view(n, 16, -1)``, a
    Shape sub-graph in ONNX); otherwise the whole target shape is a constant.
    """

    def __init__(self, batch_from_shape: bool = False) -> None:
        super().__init__()
        self.batch_from_shape = batch_from_shape
        self.conv1 = nn.Conv3d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv3d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv2(F.relu(self.conv1(x))))
        batch = y.shape[0] if self.batch_from_shape else 2
        return self.fc(y.reshape(batch, 16, -1).mean(-1))


class VNetBlock3D(nn.Module):
    """V-Net style: PReLU, strided down-conv, 5x5x5 convs, residual add, ConvTranspose up."""

    def __init__(self, cin: int = 1, width: int = 8, classes: int = 2) -> None:
        super().__init__()
        self.inp = nn.Conv3d(cin, width, 5, padding=2)
        self.act = nn.PReLU(width)
        self.down = nn.Conv3d(width, 2 * width, 2, stride=2)
        self.norm = nn.GroupNorm(4, 2 * width)
        self.body = nn.Conv3d(2 * width, 2 * width, 5, padding=2)
        self.up = nn.ConvTranspose3d(2 * width, width, 2, stride=2)
        self.out = nn.Conv3d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.inp(x))
        d = F.elu(self.norm(self.down(a)))
        d = d + self.body(d)
        return self.out(F.elu(self.up(d) + a))


class SEResNeXt3D(nn.Module):
    """A ResNeXt bottleneck (grouped conv) with squeeze-excitation, trilinear upsampling."""

    def __init__(self, cin: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(cin, 16, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(16)
        self.grouped = nn.Conv3d(16, 16, 3, padding=1, groups=4, bias=False)
        self.bn2 = nn.BatchNorm3d(16)
        self.squeeze = nn.Linear(16, 4)
        self.excite = nn.Linear(4, 16)
        self.head = nn.Conv3d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.reduce(x)))
        y = F.relu(self.bn2(self.grouped(y)))
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(y.mean(dim=(2, 3, 4))))))
        y = y * gate[:, :, None, None, None]
        y = F.interpolate(F.avg_pool3d(y, 2), scale_factor=2, mode="trilinear")
        return self.head(y)


def randomize_statistics(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (so a mix-up shows)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm3d):
                size = layer.num_features
                layer.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
                layer.running_var.copy_(0.5 + torch.rand(size, generator=generator))
                layer.weight.copy_(1 + 0.1 * torch.randn(size, generator=generator))
                layer.bias.copy_(0.1 * torch.randn(size, generator=generator))
    return module
