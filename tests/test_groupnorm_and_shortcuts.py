"""GroupNorm pruned in whole groups, and zero-padded (type-A) shortcuts, on real networks.

MONAI's SegResNet normalises with GroupNorm (the torchscript exporter and the dynamo
exporter at its default opset decompose it into Reshape [N, G, -1], InstanceNormalization,
Reshape back, Mul, Add; the dynamo exporter at opset 21 writes GroupNormalization). The 3D
ResNets of action recognition widen their residual streams by zero-padding the identity
(the zoo's resnet3d-18 with F.pad; Hara et al.'s code with a Concat of zeros). Each is
scored with RANP-f on a random batch, pruned and proven by the oracle (``prune_scored``
validates in onnxruntime and raises otherwise).
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
import torch
from builders import export_module
from hara_resnet import ResNet
from pruning_models import calibrate_batchnorm
from test_torch_api_prune import check_layers_agree_with_their_tensors, train_steps

from ranp_onnx import prune_module
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.pipeline import PruneOptions, PruneResult, prune_scored, score_model
from ranp_onnx.scoring.data import Batch
from ranp_onnx.zoo import build_model, export_built

nets = pytest.importorskip("monai.networks.nets")
CLASSES = 3


def _segresnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return nets.SegResNet(
        3, init_filters=8, in_channels=1, out_channels=CLASSES, blocks_down=(1, 2, 2),
        blocks_up=(1, 1),
    ).eval()  # fmt: skip


@functools.cache
def _segresnet_export(exporter: str, opset: int | None) -> bytes:
    x = torch.randn((1, 1, 32, 32, 32), generator=torch.Generator().manual_seed(1))
    model = export_module(_segresnet(), x, exporter=exporter, opset=opset, input_names=["input"])
    return model.SerializeToString()


def _pruned(model: onnx.ModelProto, sparsity: float, labels: np.ndarray) -> PruneResult:
    graph = analyse(model)
    shape = graph.input_shapes[graph.input_names[0]]
    inputs = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    options = PruneOptions(method="ranp-f", sparsity=sparsity, device="cpu")
    scoring = score_model(graph, [Batch({graph.input_names[0]: inputs}, labels)], options)
    result = prune_scored(graph, scoring, options)
    assert result.validation is not None and result.validation.worst[1] <= 1e-4
    assert result.validation.conclusive, result.validation  # proven node by node
    onnx.checker.check_model(result.model, full_check=True)
    return result


SEGRESNET_EXPORTS = [("torchscript", 17), ("torchscript", 18), ("dynamo", None), ("dynamo", 21)]


@pytest.mark.parametrize(("exporter", "opset"), SEGRESNET_EXPORTS)
def test_segresnet_prunes_in_whole_groupnorm_groups(exporter: str, opset: int | None) -> None:
    model = onnx.load_from_string(_segresnet_export(exporter, opset))
    labels = np.random.default_rng(1).integers(0, CLASSES, (1, 32, 32, 32))
    result = _pruned(model, 0.5, labels)
    sparsity = result.plan.achieved["neuron_sparsity"]
    macs = result.after.totals.macs / result.before.totals.macs
    print(f"SegResNet {exporter} opset {opset}: sparsity {sparsity:.4f}, MACs x{macs:.4f}")
    assert sparsity >= 0.4
    assert macs <= 0.5


@functools.cache
def _zoo_resnet_export(exporter: str) -> bytes:
    """``ranp-onnx export resnet3d-18 --preset ucf101 --width-mult 0.25 --input-shape
    3,8,56,56 --classes 10``, BatchNorm statistics calibrated (see ``pruning_models``)."""
    shape = (3, 8, 56, 56)
    built = build_model(
        "resnet3d-18", preset="ucf101", width_mult=0.25, input_shape=shape, classes=10
    )
    calibrate_batchnorm(built.module, shape)
    return export_built(built, exporter=exporter).SerializeToString()  # type: ignore[arg-type]


@functools.cache
def _hara_export(exporter: str, identity_data: bool) -> bytes:
    torch.manual_seed(0)
    net = ResNet(widen_factor=0.25, n_classes=10, identity_data=identity_data)
    calibrate_batchnorm(net, (3, 8, 56, 56))
    x = torch.randn((1, 3, 8, 56, 56), generator=torch.Generator().manual_seed(1))
    return export_module(net, x, exporter=exporter, input_names=["input"]).SerializeToString()


def _check_streams_pruned(result: PruneResult) -> None:
    """Every group but the classifier's is prunable, and every stage's stream lost channels."""
    kept_whole = [group for group in result.plan.groups if not group["prunable"]]
    assert [group["layers"] for group in kept_whole] == [[result.plan.layers[-1]["node"]]]
    convs = [layer for layer in result.plan.layers if layer["op_type"] == "Conv"]
    # The stem and each stage's last conv write the four residual streams.
    for index in (0, 4, 8, 12, 16):
        assert len(convs[index]["kept"]) < convs[index]["channels"], convs[index]


SHORTCUTS = [
    ("zoo F.pad", "torchscript"),
    ("zoo F.pad", "dynamo"),
    ("Hara cat(out, zeros)", "torchscript"),
    ("Hara cat(out, zeros)", "dynamo"),
    ("Hara cat(out.data, zeros)", "torchscript"),
]


@pytest.mark.parametrize(("kind", "exporter"), SHORTCUTS)
def test_type_a_shortcuts_prune_the_residual_streams(kind: str, exporter: str) -> None:
    if kind.startswith("zoo"):
        model = onnx.load_from_string(_zoo_resnet_export(exporter))
    else:
        model = onnx.load_from_string(_hara_export(exporter, identity_data="data" in kind))
    # torch's tracer records Hara's ``out.data`` as a constant: the exported shortcuts are
    # the example input's pooled features, so the outputs hardly depend on the input (the
    # oracle's proof still holds: it compares every tensor node by node).
    if "data" in kind:
        graph = analyse(model)
        concats = [node for node in graph.nodes if node.op_type == "Concat"]
        assert all(graph.tensors[node.inputs[0]].static for node in concats[-3:])
    result = _pruned(model, 0.8, np.array([3]))
    sparsity = result.plan.achieved["neuron_sparsity"]
    macs = result.after.totals.macs / result.before.totals.macs
    print(f"{kind} {exporter}: sparsity {sparsity:.4f}, MACs x{macs:.4f}")
    assert sparsity >= 0.7
    _check_streams_pruned(result)


def _group_sizes(module: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """(channels per group, groups) of every GroupNorm, by module name."""
    return {
        name: (layer.num_channels // layer.num_groups, layer.num_groups)
        for name, layer in module.named_modules()
        if isinstance(layer, torch.nn.GroupNorm)
    }


def test_prune_module_shrinks_segresnet_in_place_and_it_trains() -> None:
    module = _segresnet()
    before = _group_sizes(module)
    x = torch.randn((2, 1, 32, 32, 32), generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, CLASSES, (2, 32, 32, 32), generator=torch.Generator().manual_seed(2))
    result = prune_module(module, x, [(x, labels)], sparsity=0.5, method="ranp-f")
    assert result.in_place, result.reason
    assert result.module_error <= 1e-4
    assert result.neuron_sparsity >= 0.4
    check_layers_agree_with_their_tensors(module)
    after = _group_sizes(module)
    # Every GroupNorm keeps its group size and loses whole groups.
    assert {name: size for name, (size, _) in after.items()} == {
        name: size for name, (size, _) in before.items()
    }
    assert sum(groups for _, groups in after.values()) < sum(g for _, g in before.values())
    losses = train_steps(module, x, labels)
    assert losses[-1] < losses[0]


def test_prune_module_shrinks_the_zoo_resnet_in_place() -> None:
    """The zoo's block pads by its convolutions' widths, which shrinking updates."""
    built = build_model("resnet3d-18", width_mult=0.125, input_shape=(3, 8, 32, 32), classes=4)
    module = built.module
    calibrate_batchnorm(module, (3, 8, 32, 32))
    x = torch.randn((2, 3, 8, 32, 32), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 3])
    result = prune_module(module, x, [(x, labels)], sparsity=0.8, method="ranp-f")
    assert result.in_place, result.reason
    assert result.module_error <= 1e-4
    assert result.neuron_sparsity >= 0.7
    check_layers_agree_with_their_tensors(module)
    block = module.layer2[0]
    assert block.conv2.out_channels < 16 and block.extra_channels >= 0
    losses = train_steps(module, x, labels)
    assert losses[-1] < losses[0]


def test_prune_module_falls_back_for_hara_s_block_and_says_why() -> None:
    """Hara's zeros are ``planes - out.size(1)`` wide with ``planes`` fixed in a partial."""
    torch.manual_seed(0)
    module = ResNet(widen_factor=0.125, n_classes=4, identity_data=False)
    calibrate_batchnorm(module, (3, 8, 32, 32))
    x = torch.randn((2, 3, 8, 32, 32), generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="fails in its forward"):
        result = prune_module(module, x, [(x, torch.tensor([1, 3]))], sparsity=0.8)
    assert not result.in_place
    assert result.reason is not None and result.reason.startswith(
        "the shrunk ResNet fails in its forward (RuntimeError: The size of tensor a"
    )
    assert result.module is not module and result.module_error <= 1e-4
    assert result.neuron_sparsity >= 0.7
    # The pruned model still takes any batch size: the zeros' shape stays computed.
    with torch.no_grad():
        assert result.module(torch.randn(3, 3, 8, 32, 32)).shape == (3, 4)
