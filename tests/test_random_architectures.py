"""Property-based: random 3D architectures, pruned at random sparsities, hold the oracle."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import pytest
import torch
from builders import export_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import random_prune
from torch import nn

F = nn.functional

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky": lambda: nn.LeakyReLU(0.1),
    "sigmoid": nn.Sigmoid,
    "hardswish": nn.Hardswish,
    "relu6": nn.ReLU6,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}
BLOCKS = (
    "conv",
    "depthwise",
    "grouped",
    "pool",
    "upsample",
    "transpose",
    "concat",
    "residual",
    "se",
    "split",
    "groupnorm",
    "shortcut",
)
#: How a type-A shortcut zero-pads its identity: Hara's Concat with zeros, F.pad after the
#: identity's channels (the zoo's resnet3d-18), F.pad before them.
SHORTCUT_FORMS = ("cat", "pad", "pad-before")


@dataclass(frozen=True)
class Block:
    kind: str
    width: int
    kernel: int
    batchnorm: bool
    activation: str
    extra: int


class RandomNet(nn.Module):
    """Applies a list of blocks to a [N, C, S, S, S] tensor, then a head."""

    def __init__(
        self, channels: int, size: int, blocks: list[Block], head: str, classes: int
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        self.kinds: list[str] = []
        for block in blocks:
            module, channels, size = _build(block, channels, size)
            if module is None:
                continue
            self.layers.append(module)
            self.kinds.append(block.kind)
        self.head_kind = head
        if head == "conv":
            self.head: nn.Module = nn.Conv3d(channels, classes, 1)
        elif head == "flatten":
            self.head = nn.Linear(channels * size**3, classes)
        else:
            self.head = nn.Sequential(nn.Linear(channels, 6), nn.ReLU(), nn.Linear(6, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for kind, layer in zip(self.kinds, self.layers):
            x = layer(x) if kind not in ("residual",) else x + layer(x)
        if self.head_kind == "conv":
            return self.head(x)
        if self.head_kind == "flatten":
            return self.head(torch.flatten(x, 1))
        return self.head(x.mean(dim=(2, 3, 4)))


class Concat(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


class SplitAdd(nn.Module):
    def __init__(self, stem: nn.Module, sizes: list[int], a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.stem, self.sizes, self.a, self.b = stem, sizes, a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = torch.split(self.stem(x), self.sizes, dim=1)
        return self.a(left) + self.b(right)


class ShortcutA(nn.Module):
    """A residual block that widens its stream: the identity is pooled and zero-padded."""

    def __init__(self, body: nn.Module, planes: int, stride: int, form: str) -> None:
        super().__init__()
        self.body, self.planes, self.stride, self.form = body, planes, stride, form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
        extra = self.planes - out.size(1)
        if self.form == "cat":
            zeros = torch.zeros(out.size(0), extra, out.size(2), out.size(3), out.size(4))
            identity = torch.cat([out, zeros], 1)
        elif self.form == "pad":
            identity = F.pad(out, (0, 0, 0, 0, 0, 0, 0, extra))
        else:
            identity = F.pad(out, (0, 0, 0, 0, 0, 0, extra, 0))
        return self.body(x) + identity


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv3d(channels, hidden, 1), nn.Conv3d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool3d(x, 1)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class Upsample(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)


def _unit(
    cin: int,
    cout: int,
    block: Block,
    groups: int = 1,
    kernel: int | None = None,
    *,
    stride: int = 1,
    norm_groups: int = 0,
) -> nn.Module:
    """Conv, then BatchNorm (or a GroupNorm of ``norm_groups`` groups), then activation."""
    k = kernel or block.kernel
    layers: list[nn.Module] = [
        nn.Conv3d(cin, cout, k, stride=stride, padding=k // 2, groups=groups)
    ]
    if norm_groups:
        layers.append(nn.GroupNorm(norm_groups, cout, affine=block.batchnorm))
    elif block.batchnorm:
        layers.append(nn.BatchNorm3d(cout))
    layers.append(ACTIVATIONS[block.activation]())
    return nn.Sequential(*layers)


def _build(block: Block, c: int, size: int) -> tuple[nn.Module | None, int, int]:
    w = block.width
    if block.kind == "conv":
        return _unit(c, w, block), w, size
    if block.kind == "depthwise":
        return (
            _unit(c, c * (1 + block.extra % 2), block, groups=c, kernel=3),
            c * (1 + block.extra % 2),
            size,
        )
    if block.kind == "grouped":
        groups = max(g for g in (1, 2, 3, 4) if c % g == 0 and g <= 1 + block.extra)
        return (
            _unit(c, groups * (1 + block.extra % 3), block, groups=groups, kernel=1),
            groups * (1 + block.extra % 3),
            size,
        )
    if block.kind == "pool" and size >= 4:
        pool = nn.MaxPool3d(2) if block.extra % 2 else nn.AvgPool3d(2)
        return pool, c, size // 2
    if block.kind == "upsample" and size <= 4:
        return Upsample("nearest" if block.extra % 2 else "trilinear"), c, size * 2
    if block.kind == "transpose" and size <= 4:
        return nn.ConvTranspose3d(c, w, 2, stride=2), w, size * 2
    if block.kind == "concat":
        extra = 1 + block.extra
        return Concat(_unit(c, w, block), _unit(c, extra, block, kernel=1)), w + extra, size
    if block.kind == "residual":
        return _unit(c, c, block), c, size
    if block.kind == "se":
        return SqueezeExcite(c, 1 + block.extra), c, size
    if block.kind == "split":
        sizes = [1 + block.extra % 3, w]
        stem = _unit(c, sum(sizes), block, kernel=1)
        return (
            SplitAdd(stem, sizes, _unit(sizes[0], w, block), _unit(sizes[1], w, block, kernel=1)),
            w,
            size,
        )
    if block.kind == "groupnorm":
        groups = 1 + block.extra % 3
        width = groups * (1 + block.width % 3)
        return _unit(c, width, block, norm_groups=groups), width, size
    if block.kind == "shortcut":
        stride = 2 if size >= 4 and block.extra % 2 else 1
        planes = c + 1 + block.width % 3
        body = _unit(c, planes, block, stride=stride, norm_groups=planes if block.extra > 3 else 0)
        form = SHORTCUT_FORMS[block.extra % len(SHORTCUT_FORMS)]
        return ShortcutA(body, planes, stride, form), planes, size // stride
    return None, c, size


def random_model(
    channels: int, size: int, layout: list[Block], head: str, seed: int
) -> onnx.ModelProto:
    """The exported network, BatchNorm statistics and affine parameters away from 0 and 1."""
    torch.manual_seed(seed)
    net = RandomNet(channels, size, layout, head, classes=3).eval()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_()
    return export_module(net, torch.randn(2, channels, size, size, size))


blocks = st.builds(
    Block,
    kind=st.sampled_from(BLOCKS),
    width=st.integers(1, 6),
    kernel=st.sampled_from([1, 3]),
    batchnorm=st.booleans(),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    extra=st.integers(0, 5),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    channels=st.integers(1, 3),
    size=st.sampled_from([2, 4]),
    layout=st.lists(blocks, min_size=1, max_size=6),
    head=st.sampled_from(["conv", "flatten", "pool"]),
    sparsity=st.floats(0.05, 0.95),
    seed=st.integers(0, 1000),
)
def test_random_architecture_prunes_exactly(
    channels: int, size: int, layout: list[Block], head: str, sparsity: float, seed: int
) -> None:
    model = random_model(channels, size, layout, head, seed)
    run = random_prune(model, sparsity, seed)
    assert run.error <= 1e-4
    assert run.macs_after <= run.macs_before


def _block(kind: str, width: int, extra: int) -> Block:
    return Block(kind=kind, width=width, kernel=1, batchnorm=False, activation="elu", extra=extra)


#: Found by the property test: a grouped conv reading the output of a depthwise conv with a
#: channel multiplier (each unit holds 2 channels, and a block boundary falls inside one).
MULTIPLIER = [_block("depthwise", 1, 0), _block("depthwise", 1, 1)]
MULTIPLIER_THEN_GROUPED = [
    ([_block("conv", 1, 0), _block("split", 3, 1), _block("conv", 6, 0), *MULTIPLIER], 3, 0),
    ([_block("conv", 1, 0), _block("conv", 5, 0), *MULTIPLIER], 1, 297),
    ([_block("conv", 1, 0), _block("conv", 5, 0), *MULTIPLIER], 1, 1),
]


@pytest.mark.parametrize(("start", "extra", "seed"), MULTIPLIER_THEN_GROUPED)
def test_grouped_conv_after_a_channel_multiplier_is_kept_whole_or_exact(
    start: list[Block], extra: int, seed: int
) -> None:
    torch.manual_seed(seed)
    net = RandomNet(1, 2, [*start, _block("grouped", 1, extra)], "conv", classes=3).eval()
    run = random_prune(export_module(net, torch.randn(2, 1, 2, 2, 2)), 0.5, seed)
    assert run.error <= 1e-4
    assert run.macs_after <= run.macs_before
