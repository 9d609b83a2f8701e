"""A 3D ResNet written the way Hara et al.'s 3D-ResNets-PyTorch writes it (models/resnet.py).

Shortcut type A: where a stage widens, the identity is average-pooled with kernel 1 and
concatenated with a zeros tensor whose width is ``planes - out.size(1)``, through a
``functools.partial`` of the model's own method, exactly as the repository does. Its
``torch.cat([out.data, zero_pads], dim=1)`` is kept (``identity_data=True``): the
torchscript exporter traces ``out.data`` as a constant (the pooled identity of the
example input), and the dynamo exporter fails on it. ``identity_data=False``
concatenates ``out`` itself, which both exporters write as a Concat of the pooled
identity with zeros (a ConstantOfShape of a shape computed from Shape nodes, or a
folded initializer).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, downsample: Any = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            residual = self.downsample(x)

        out += residual
        out = self.relu(out)

        return out


class ResNet(nn.Module):
    """Hara's ResNet (``shortcut_type="A"``), ResNet-18 with ``layers=(2, 2, 2, 2)``."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        block_inplanes: tuple[int, int, int, int] = (64, 128, 256, 512),
        *,
        widen_factor: float = 1.0,
        n_classes: int = 400,
        identity_data: bool = True,
    ) -> None:
        super().__init__()
        inplanes = [int(x * widen_factor) for x in block_inplanes]
        self.identity_data = identity_data
        self.in_planes = inplanes[0]
        self.conv1 = nn.Conv3d(
            3, self.in_planes, kernel_size=(7, 7, 7), stride=(1, 2, 2), padding=(3, 3, 3),
            bias=False,
        )  # fmt: skip
        self.bn1 = nn.BatchNorm3d(self.in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(inplanes[0], layers[0])
        self.layer2 = self._make_layer(inplanes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(inplanes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(inplanes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(inplanes[3] * BasicBlock.expansion, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _downsample_basic_block(self, x: torch.Tensor, planes: int, stride: int) -> torch.Tensor:
        out = F.avg_pool3d(x, kernel_size=1, stride=stride)
        zero_pads = torch.zeros(
            out.size(0), planes - out.size(1), out.size(2), out.size(3), out.size(4)
        )
        if isinstance(out.data, torch.cuda.FloatTensor):
            zero_pads = zero_pads.cuda()

        out = torch.cat([out.data if self.identity_data else out, zero_pads], dim=1)

        return out

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_planes != planes * BasicBlock.expansion:
            downsample = partial(
                self._downsample_basic_block, planes=planes * BasicBlock.expansion, stride=stride
            )
        layers = [BasicBlock(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * BasicBlock.expansion
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.in_planes, planes))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)

        return x
