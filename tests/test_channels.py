"""Channel groups on the graph patterns pruning tools must get right, proven by the oracle."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from builders import export_module
from oracle import random_prune
from torch import nn

from ranp_onnx.analysis.channels import ChannelAnalysis, analyse_channels
from ranp_onnx.analysis.shapes import analyse

F = nn.functional


def conv(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, k, padding=k // 2, groups=groups)


class CascadedConcat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = conv(2, 3), conv(2, 4), conv(2, 5)
        self.head = conv(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = torch.cat([self.b(x), self.c(x)], 1)
        return self.head(torch.relu(torch.cat([self.a(x), inner], 1)))


class ConcatThenSplit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(2, 4), conv(2, 6)
        self.left, self.right = conv(3, 2), conv(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.relu(torch.cat([self.a(x), self.b(x)], 1))
        left, right = torch.split(joined, [3, 7], dim=1)
        return self.left(left) + self.right(right)


class ResidualChain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(2, 6)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                conv(6, 8, 1), nn.BatchNorm3d(8), nn.ReLU(), conv(8, 6, 1), nn.BatchNorm3d(6)
            )
            for _ in range(3)
        )
        self.head = conv(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


class DepthwiseChain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pw1, self.dw1 = conv(2, 8, 1), conv(8, 8, 3, groups=8)
        self.pw2, self.dw2 = conv(8, 6, 1), conv(6, 12, 3, groups=6)
        self.head = conv(12, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.dw1(F.relu6(self.pw1(x))))
        return self.head(self.dw2(self.pw2(x)))


class GroupedConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = conv(2, 8)
        self.b = conv(8, 12, 3, groups=2)
        self.c = conv(12, 8, 1, groups=4)
        self.head = conv(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x)))))))


class SqueezeExcitation(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = conv(2, 8)
        self.fc1, self.fc2 = nn.Linear(8, 4), nn.Linear(4, 8)
        self.head = conv(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.body(x))
        s = F.adaptive_avg_pool3d(y, 1).flatten(1)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return self.head(y * s.view(s.shape[0], -1, 1, 1, 1))


class ChannelShuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = conv(2, 8)
        self.b = conv(8, 4, 1)
        self.head = conv(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        n, c, d, h, w = y.shape
        y = y.view(n, 2, c // 2, d, h, w).transpose(1, 2).reshape(n, c, d, h, w)
        return self.head(torch.relu(self.b(y)))


class SeveralOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = conv(2, 8)
        self.seg, self.aux = conv(8, 3, 1), conv(8, 5, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = torch.relu(self.trunk(x))
        return self.seg(y), self.aux(y), self.fc(y.mean(dim=(2, 3, 4)))


class UpsamplingDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = conv(2, 6)
        self.down = conv(6, 8)
        self.up = nn.ConvTranspose3d(8, 4, 2, stride=2)
        self.up_groups = nn.ConvTranspose3d(8, 4, 2, stride=2, groups=2)
        self.fuse = conv(6 + 4 + 4 + 8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = torch.relu(self.enc(x))
        low = torch.relu(self.down(F.max_pool3d(skip, 2)))
        resized = F.interpolate(low, size=skip.shape[2:], mode="trilinear", align_corners=False)
        return self.fuse(torch.cat([skip, self.up(low), self.up_groups(low), resized], 1))


class NormalisationsAndSlices(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = conv(2, 8)
        self.norm = nn.InstanceNorm3d(8, affine=True)
        self.prelu = nn.PReLU(8)
        self.b = conv(8, 8)
        self.group_norm = nn.GroupNorm(4, 8)
        self.head = conv(5, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.prelu(self.norm(self.a(x)))
        z = F.leaky_relu(self.group_norm(self.b(y)))
        return self.head(z[:, 3:])


class SharedWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = conv(2, 6)
        self.shared = conv(6, 6)
        self.head = conv(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return self.head(torch.relu(self.shared(torch.relu(self.shared(y)))))


class FlattenHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = conv(2, 6)
        self.b = nn.Conv3d(6, 4, 3, stride=2, padding=1)
        self.fc1, self.fc2 = nn.Linear(4 * 2 * 2 * 2, 10), nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b(torch.relu(self.a(x))))
        return self.fc2(F.dropout(torch.relu(self.fc1(torch.flatten(y, 1))), 0.5, self.training))


class EinsumPatterns(nn.Module):
    """Einsum carries a's and b's channels to axis 1, sums c's and moves d's (D = C = 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.d = conv(2, 4), conv(2, 4), conv(2, 3), conv(2, 4)
        self.scale = nn.Parameter(torch.rand(4) + 0.5)
        self.head, self.side = conv(4, 3, 1), conv(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = torch.einsum("ncdhw,ncdhw,c->ncdhw", self.a(x), self.b(x), self.scale)
        mixed = torch.einsum("nkdhw,ncdhw->nkdhw", gated, self.c(x))
        moved = torch.einsum("ncdhw->ndchw", self.d(x))
        return self.head(torch.relu(mixed)) + self.side(moved)


class NormsSharingOnes(nn.Module):
    """An InstanceNorm and a LayerNorm over the last axis (W = C = 4), both weights of ones.

    The dynamo exporter stores the equal weights once and feeds both norms from it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = conv(2, 4), conv(4, 4), conv(4, 3, 1)
        self.instance, self.layer = nn.InstanceNorm3d(4, affine=True), nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.instance(self.a(x)))
        return self.head(self.layer(self.b(y)))


def _randomise_batchnorm(module: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    for child in module.modules():
        if (
            isinstance(child, (nn.BatchNorm3d, nn.InstanceNorm3d, nn.GroupNorm))
            and child.weight is not None
        ):
            child.weight.data = 0.5 + torch.rand(child.weight.shape, generator=generator)
            child.bias.data = torch.randn(child.bias.shape, generator=generator)
        if isinstance(child, nn.BatchNorm3d):
            child.running_mean = torch.randn(child.running_mean.shape, generator=generator)
            child.running_var = 0.5 + torch.rand(child.running_var.shape, generator=generator)
    return module.eval()


def _groups_by_layers(channels: ChannelAnalysis) -> dict[int, list[str]]:
    return {group.id: list(group.layers) for group in channels.groups}


Check = Callable[[ChannelAnalysis], None]


def _check_residual(channels: ChannelAnalysis) -> None:
    tied = [g for g in channels.groups if len(g.layers) == 4]
    assert len(tied) == 1 and tied[0].prunable  # stem + the three blocks' last convs


def _check_depthwise(channels: ChannelAnalysis) -> None:
    layers = _groups_by_layers(channels).values()
    assert any(len(names) == 2 and "dw1" in names[1] for names in layers)
    assert any(len(names) == 2 and "dw2" in names[1] for names in layers)


def _check_grouped(channels: ChannelAnalysis) -> None:
    # a: 2 blocks (read by b); b: 2 blocks written, 4 read by c -> refined to 4; c: 4.
    assert sorted(len(g.equal_blocks) for g in channels.groups if g.equal_blocks) == [2, 4, 4]
    assert all(g.prunable for g in channels.groups[:3])


def _check_shuffle(channels: ChannelAnalysis) -> None:
    blocked = [g for g in channels.groups if not g.prunable and "a" in g.layers[0]]
    assert blocked and (
        "Reshape" in str(blocked[0].reason) or "Transpose" in str(blocked[0].reason)
    )


def _check_se(channels: ChannelAnalysis) -> None:
    body = [g for g in channels.groups if len(g.layers) == 2 and any("fc2" in n for n in g.layers)]
    assert body and body[0].prunable  # the body conv's channels are tied to fc2's outputs


def _check_outputs(channels: ChannelAnalysis) -> None:
    assert sum(1 for g in channels.groups if not g.prunable) == 3


def _check_groupnorm(channels: ChannelAnalysis) -> None:
    group = next(
        g for g in channels.groups if any("/b/" in n or n.endswith("b.weight") for n in g.layers)
    )
    assert group.width == 4  # 8 channels in 4 normalisation groups of 2


def _check_einsum(channels: ChannelAnalysis) -> None:
    by_layers = {group.layers: group for group in channels.groups}
    assert by_layers[("/a/Conv", "/b/Conv")].prunable  # tied through the product
    summed = by_layers[("/c/Conv",)]
    assert not summed.prunable and "sums over input 1's channel axis" in str(summed.reason)
    moved = by_layers[("/d/Conv",)]
    assert not moved.prunable and "moves input 0's channel axis to output axis 2" in str(
        moved.reason
    )


CASES: list[tuple[type[nn.Module], tuple[int, ...], Check | None]] = [
    (CascadedConcat, (1, 2, 4, 4, 4), None),
    (ConcatThenSplit, (1, 2, 4, 4, 4), None),
    (ResidualChain, (1, 2, 4, 4, 4), _check_residual),
    (DepthwiseChain, (1, 2, 4, 4, 4), _check_depthwise),
    (GroupedConvs, (1, 2, 4, 4, 4), _check_grouped),
    (SqueezeExcitation, (2, 2, 4, 4, 4), _check_se),
    (ChannelShuffle, (1, 2, 4, 4, 4), _check_shuffle),
    (SeveralOutputs, (2, 2, 4, 4, 4), _check_outputs),
    (UpsamplingDecoder, (1, 2, 4, 4, 4), None),
    (NormalisationsAndSlices, (1, 2, 4, 4, 4), None),
    (SharedWeights, (1, 2, 4, 4, 4), None),
    (FlattenHead, (2, 2, 4, 4, 4), None),
    (EinsumPatterns, (1, 2, 4, 4, 4), _check_einsum),
    (NormsSharingOnes, (1, 2, 4, 4, 4), None),
]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize(("factory", "shape", "check"), CASES, ids=[c[0].__name__ for c in CASES])
def test_pattern_prunes_exactly(
    factory: type[nn.Module], shape: tuple[int, ...], check: Check | None, exporter: str
) -> None:
    torch.manual_seed(0)
    model = export_module(_randomise_batchnorm(factory()), torch.randn(shape), exporter=exporter)
    channels = analyse_channels(analyse(model))
    if check is not None and exporter == "torchscript":
        check(channels)
    for sparsity, seed in ((0.3, 1), (0.6, 2), (0.9, 3)):
        run = random_prune(model, sparsity, seed)
        assert run.error <= 1e-4
        if any(g.prunable for g in channels.groups):
            assert run.macs_after <= run.macs_before


def test_default_batchnorm_init_aliases_initializers_and_still_prunes() -> None:
    """torch's exporter de-duplicates equal initializers (BN weights of 1) through Identity."""
    model = export_module(ResidualChain().eval(), torch.randn(1, 2, 4, 4, 4))
    assert any(node.op_type == "Identity" for node in model.graph.node)
    run = random_prune(model, 0.5, 0)
    assert run.error <= 1e-4 and run.macs_after < run.macs_before


def test_initializer_shared_with_a_norm_that_does_not_slice_it_is_kept() -> None:
    model = export_module(NormsSharingOnes().eval(), torch.randn(1, 2, 4, 4, 4), exporter="dynamo")
    channels = analyse_channels(analyse(model))
    first, second, head = channels.groups  # a (InstanceNorm), b (LayerNorm), the head
    assert not first.prunable and "is also read by node 'node_layer_norm'" in str(first.reason)
    assert second.prunable and not head.prunable
    run = random_prune(model, 0.6, 2)
    assert run.error <= 1e-4 and run.macs_after < run.macs_before
