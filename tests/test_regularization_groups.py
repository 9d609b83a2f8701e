"""Weight groups (channel units and im2col columns) and the SPR/DPR allocation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ranp_onnx.analysis.channels import analyse_channels
from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.errors import PlanError
from ranp_onnx.ir.graph import GraphAnalysis
from ranp_onnx.regularization.allocation import (
    allocate,
    due_counts,
    layer_ratios,
    paper_ratios,
    predicted_flops,
)
from ranp_onnx.regularization.groups import WeightGroups, weight_groups
from ranp_onnx.regularization.regularizer import trainable_tensors
from ranp_onnx.torch_api.prune_module import export_for_pruning

SHAPE = (1, 1, 4, 4, 4)


class TwoConvs(nn.Module):
    """conv-bn-relu twice, global pooling, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4)
        self.conv2, self.bn2 = nn.Conv3d(4, 6, 3, padding=1), nn.BatchNorm3d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(x, 1), 1))


class Residual(nn.Module):
    """A stem and a residual block: the stem and the block's second conv are coupled."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv3d(4, 5, 3, padding=1)
        self.conv2 = nn.Conv3d(5, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.stem(x))
        y = F.relu(y + self.conv2(F.relu(self.conv1(y))))
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(y, 1), 1))


def exported(module: nn.Module) -> tuple[GraphAnalysis, list[str]]:
    torch.manual_seed(0)
    module = module.eval()
    model = export_for_pruning(module, [torch.randn(SHAPE)])
    return analyse(model, {"input": SHAPE}), list(trainable_tensors(module))


def groups_of(module: nn.Module, granularity: str) -> WeightGroups:
    graph, parameters = exported(module)
    return weight_groups(analyse_channels(graph), granularity, parameters)


def slices(groups: WeightGroups, layer: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(piece.tensor, piece.axes) for piece in groups.layers[layer].slices]


def test_channel_groups_hold_every_slice_the_rewrite_cuts() -> None:
    groups = groups_of(TwoConvs(), "channel")
    assert [layer.size for layer in groups.layers] == [4, 6]
    assert slices(groups, 0) == [
        ("bn1.bias", (0,)),
        ("bn1.weight", (0,)),
        ("conv1.bias", (0,)),
        ("conv1.weight", (0,)),
        ("conv2.weight", (1,)),
    ]
    assert slices(groups, 1) == [
        ("bn2.bias", (0,)),
        ("bn2.weight", (0,)),
        ("conv2.bias", (0,)),
        ("conv2.weight", (0,)),
        ("fc.weight", (1,)),
    ]
    for layer in groups.layers:
        for piece in layer.slices:
            np.testing.assert_array_equal(piece.index, np.arange(layer.size))
    # The fully connected layer is left alone, as in the paper; it is not a convolution.
    assert groups.left_alone == ()
    assert groups.group_count == 10


def test_coupled_convolutions_are_one_layer() -> None:
    groups = groups_of(Residual(), "channel")
    by_nodes = {layer.nodes: layer.size for layer in groups.layers}
    assert sorted(by_nodes.values()) == [4, 5]
    coupled = next(nodes for nodes, size in by_nodes.items() if size == 4)
    assert len(coupled) == 2 and coupled[0].startswith("/stem/")
    tensors = {piece.tensor for layer in groups.layers for piece in layer.slices if layer.size == 4}
    assert {"stem.weight", "conv2.weight", "conv1.weight", "fc.weight"} <= tensors


def test_shape_groups_are_im2col_columns() -> None:
    groups = groups_of(TwoConvs(), "shape")
    assert [layer.size for layer in groups.layers] == [27, 108]
    first, second = groups.layers
    assert slices(groups, 1) == [("conv2.weight", (1, 2, 3, 4))]
    np.testing.assert_array_equal(second.slices[0].index, np.arange(108).reshape(4, 3, 3, 3))
    # Column c * 27 + p reads input channel c: the unit conv1's channel c is in.
    channels = groups.channels
    conv1_units = channels.layer(first.name).units
    np.testing.assert_array_equal(second.units, np.repeat(conv1_units, 27))


def hand_dpr(weights: list[np.ndarray], flops: list[float], pr: float) -> np.ndarray:
    """Zhang et al. section 2.2 by hand: PCA error, FLOPs share, Eq. 4."""
    errors = []
    for weight in weights:
        rows = weight.reshape(weight.shape[0], -1).astype(np.float64)
        singular = np.linalg.svd(rows - rows.mean(axis=0), compute_uv=False)
        error = [
            float(np.sum(singular[round(k / 20 * singular.size) :] ** 2) / np.sum(rows**2))
            for k in range(1, 20)
        ]
        errors.append(np.mean(error))
    alpha = (1 / np.array(errors)) / np.sum(1 / np.array(errors))
    g = np.array(flops)
    gamma = 0.2 * alpha + 0.8 * g / g.sum()
    return pr * g.sum() / np.sum(g * gamma) * gamma


def test_dpr_ratios_equal_a_hand_computation() -> None:
    graph, parameters = exported(TwoConvs())
    groups = weight_groups(analyse_channels(graph), "channel", parameters)
    # The reference counter's layer FLOPs: output elements x (C_in x 27 + bias).
    flops = [4 * 64 * (1 * 27 + 1), 6 * 64 * (4 * 27 + 1)]
    assert [layer.flops for layer in groups.layers] == flops
    weights = [graph.initializer("conv1.weight"), graph.initializer("conv2.weight")]
    np.testing.assert_allclose(layer_ratios(groups, "dpr", 0.5), hand_dpr(weights, flops, 0.5))
    np.testing.assert_allclose(paper_ratios(groups, 4.0), hand_dpr(weights, flops, 0.75))
    np.testing.assert_array_equal(layer_ratios(groups, "spr", 0.3), [0.3, 0.3])


@pytest.mark.parametrize("granularity", ["channel", "shape"])
@pytest.mark.parametrize("method", ["spr", "dpr"])
def test_allocation_is_the_least_pruning_that_meets_the_speedup(
    granularity: str, method: str
) -> None:
    groups = groups_of(TwoConvs(), granularity)
    allocation = allocate(groups, method, speedup=2.0)
    full = count_costs(groups.channels.graph).totals.flops
    assert allocation.full_flops == full and allocation.target_flops == full / 2
    assert allocation.predicted_flops <= full / 2
    ratios = np.array(allocation.ratios)
    np.testing.assert_array_equal(allocation.due, due_counts(groups, ratios))
    np.testing.assert_array_equal(
        allocation.due,
        [
            min(int(np.floor(r * n + 1e-9)), n - 1)
            for r, n in zip(ratios, [layer.size for layer in groups.layers])
        ],
    )
    assert predicted_flops(groups, allocation.due, "standard") == allocation.predicted_flops
    # One bisection step less pruning no longer meets the target.
    less = layer_ratios(groups, method, allocation.prune_ratio * (1 - 2e-3))
    assert predicted_flops(groups, due_counts(groups, less), "standard") > full / 2


def test_shape_allocation_counts_the_columns_macs() -> None:
    groups = groups_of(TwoConvs(), "shape")
    report = {layer.name: layer.macs for layer in count_costs(groups.channels.graph).layers}
    full = count_costs(groups.channels.graph).totals.flops
    due = [9, 54]
    saved = 2 * (report[groups.layers[0].name] * 9 / 27 + report[groups.layers[1].name] * 54 / 108)
    assert predicted_flops(groups, due, "standard") == pytest.approx(full - saved)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"speedup": 1.0}, "`speedup` 1: the full model already meets it"),
        ({"target_flops": 1.0}, "`target_flops` 1: the full model already meets it"),
        ({"speedup": 1000.0}, "`speedup` 1000 is not reachable at `granularity` channel"),
        ({}, "give exactly one of `speedup` and `target_flops`"),
    ],
)
def test_allocation_refusals(settings: dict[str, float], message: str) -> None:
    groups = groups_of(TwoConvs(), "channel")
    with pytest.raises(PlanError, match=message.replace(".", r"\.")):
        allocate(groups, "dpr", **settings)  # type: ignore[arg-type]


def test_a_model_with_nothing_to_regularize_says_why() -> None:
    class OneConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(1, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    groups = groups_of(OneConv(), "channel")
    assert groups.layers == ()
    assert groups.left_alone == (("/conv/Conv", "feeds graph output '3'"),)
    with pytest.raises(PlanError, match="nothing to regularize at `granularity` channel"):
        allocate(groups, "spr", speedup=2.0)
