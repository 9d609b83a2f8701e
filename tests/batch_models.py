"""Classifier heads as users write them, exported as users export them (tests/test_batch*.py).

Four small 3D networks whose heads tie the batch to the graph in the ways real exports do:

- ``efficientnet``: MBConv blocks with squeeze-and-excitation, global pool, flatten, Linear
  (dynamo bakes the exported batch into the Reshape before the Linear);
- ``densenet``: global pool, then BatchNormalization on ``[N, C, 1, 1, 1]`` (one value per
  channel at batch 1), flatten, Linear;
- ``resnet10``: MONAI's ResNet10 (``x.view(x.size(0), -1)``, which the torchscript exporter
  turns into a constant at a static batch);
- ``x3d``: conv, pool, then the Linear layers as 1x1x1 convolutions and
  ``x.view(x.size(0), -1)`` (X3D's head).

Each is exported five ways (:data:`EXPORTS`): the torchscript exporter with and without
``dynamic_axes``, and the dynamo exporter (torch's default) without dynamic shapes, with
``dynamic_shapes`` and with ``dynamic_axes``.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable

import onnx
import torch
from torch import nn

CLASSES = 3
#: Input spatial size of every network (small: the tests run 60 prunes).
SIZE = 8
EXPORTS = (
    "torchscript",
    "torchscript-dynamic",
    "dynamo",
    "dynamo-dynamic-shapes",
    "dynamo-dynamic-axes",
)


class SqueezeExcitation(nn.Module):
    """Global pool, reduce, expand, sigmoid gate (EfficientNet's SE)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(channels, reduced, 1)
        self.expand = nn.Conv3d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = nn.functional.adaptive_avg_pool3d(x, 1)
        scale = torch.sigmoid(self.expand(nn.functional.silu(self.reduce(scale))))
        return x * scale


class MBConv(nn.Module):
    """Expand 1x1x1, depthwise 3x3x3, squeeze-and-excitation, project 1x1x1, residual."""

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Sequential(
            nn.Conv3d(channels, hidden, 1, bias=False), nn.BatchNorm3d(hidden), nn.SiLU()
        )
        self.depthwise = nn.Sequential(
            nn.Conv3d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.BatchNorm3d(hidden),
            nn.SiLU(),
        )
        self.se = SqueezeExcitation(hidden, max(1, channels // 2))
        self.project = nn.Sequential(
            nn.Conv3d(hidden, channels, 1, bias=False), nn.BatchNorm3d(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.depthwise(self.expand(x))))


class EfficientNet3d(nn.Module):
    """Stem, two MBConv blocks, head conv, global pool, flatten, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(1, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm3d(8), nn.SiLU()
        )
        self.blocks = nn.Sequential(MBConv(8, 2), MBConv(8, 2))
        self.head = nn.Sequential(nn.Conv3d(8, 16, 1, bias=False), nn.BatchNorm3d(16), nn.SiLU())
        self.classifier = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool3d(self.head(self.blocks(self.stem(x))), 1)
        return self.classifier(torch.flatten(x, 1))


class DenseNetHead(nn.Module):
    """A conv trunk, global pool, then BatchNorm on ``[N, C, 1, 1, 1]``, flatten, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(), nn.Conv3d(8, 12, 3)
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.norm = nn.BatchNorm3d(12)
        self.classifier = nn.Linear(12, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(self.pool(self.features(x))))
        return self.classifier(torch.flatten(x, 1))


class X3dHead(nn.Module):
    """Conv, BatchNorm, pool, Linear layers as 1x1x1 convs, ``x.view(x.size(0), -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU())
        self.pool = nn.AvgPool3d(SIZE)
        self.lin5 = nn.Conv3d(8, 16, 1)
        self.proj = nn.Conv3d(16, CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(torch.relu(self.lin5(self.pool(self.conv(x)))))
        return x.view(x.size(0), -1)


def _resnet10() -> nn.Module:
    from monai.networks import nets

    return nets.resnet10(
        spatial_dims=3, n_input_channels=1, num_classes=CLASSES, widen_factor=0.125
    )


NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "efficientnet": EfficientNet3d,
    "densenet": DenseNetHead,
    "resnet10": _resnet10,
    "x3d": X3dHead,
}


def network(name: str) -> nn.Module:
    """The network ``name``, seeded, in eval mode, with BatchNorm statistics away from 0, 1."""
    torch.manual_seed(0)
    module = NETWORKS[name]().eval()
    generator = torch.Generator().manual_seed(0)
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            assert layer.running_mean is not None and layer.running_var is not None
            shape = layer.running_mean.shape
            layer.running_mean.copy_(0.2 * torch.rand(shape, generator=generator) - 0.1)
            layer.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
    return module


@functools.cache
def exported(name: str, export: str, batch: int = 1) -> onnx.ModelProto:
    """``network(name)`` exported the way ``export`` says, at input batch ``batch``."""
    module = network(name)
    example = torch.randn(batch, 1, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if export.startswith("torchscript"):
            axes = {"input": {0: "batch"}, "output": {0: "batch"}}
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes=axes if export.endswith("dynamic") else None,
            )
            return onnx.load_from_string(buffer.getvalue())
        extra: dict[str, object] = {}
        if export == "dynamo-dynamic-shapes":
            extra["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=64)}}
        elif export == "dynamo-dynamic-axes":
            extra["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            external_data=False,
            input_names=["input"],
            output_names=["output"],
            verbose=False,
            **extra,
        )
        assert program is not None
        program.save(buffer, external_data=False)
    return onnx.load_from_string(buffer.getvalue())
