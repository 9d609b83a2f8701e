"""3D networks the project did not write: MONAI's, exported by torch as a user would.

Each network is exported with the torchscript exporter (``torch.onnx.export`` defaults),
then (1) the round trip ``to_torch`` evaluates it as onnxruntime does, and (2) it is
pruned with RANP-f, vanilla and random at two sparsities: every run either passes the
masked-original oracle in onnxruntime (``prune`` validates by default and raises
otherwise) with fewer MACs, or is refused with a one-line reason. Achieved MACs never rise
with sparsity. (3) ``prune_module`` shrinks MONAI's own module classes in place, and the
shrunk module trains.

Networks with a transformer encoder (UNETR, SwinUNETR) are exported with both torch
exporters and pruned with RANP-f: their convolutions lose channels, the transformer is
kept whole, and ``explain`` names the node that keeps each of its layers whole.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from builders import export_module
from test_torch_api_prune import check_layers_agree_with_their_tensors, train_steps

from ranp_onnx import PruneOptions, prune_module, to_torch
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.errors import PlanError
from ranp_onnx.ops.aliases import separate_aliases
from ranp_onnx.pipeline import PruneResult, prune_scored, score_model
from ranp_onnx.reporting.explain import explain
from ranp_onnx.scoring.data import Batch

nets = pytest.importorskip("monai.networks.nets")
onnxruntime.set_default_logger_severity(3)

CLASSES = 3
#: name: (constructor, spatial size, per-voxel labels).
NETWORKS: dict[str, tuple[Callable[[], torch.nn.Module], int, bool]] = {
    "UNet-residual-batchnorm": (
        lambda: nets.UNet(3, 1, CLASSES, (4, 8, 16), (2, 2), num_res_units=2, norm="batch"),
        16,
        True,
    ),
    "UNet-instancenorm": (lambda: nets.UNet(3, 1, CLASSES, (4, 8, 16), (2, 2)), 16, True),
    "BasicUNet": (lambda: nets.BasicUNet(3, 1, CLASSES, features=(4, 4, 8, 8, 16, 4)), 32, True),
    "DynUNet": (
        lambda: nets.DynUNet(3, 1, CLASSES, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16]),
        16,
        True,
    ),
    "AttentionUnet": (lambda: nets.AttentionUnet(3, 1, CLASSES, (4, 8, 16), (2, 2)), 16, True),
    "SegResNet-groupnorm": (
        lambda: nets.SegResNet(3, init_filters=8, in_channels=1, out_channels=CLASSES),
        16,
        True,
    ),
    "DenseNet": (
        lambda: nets.DenseNet(3, 1, CLASSES, init_features=8, growth_rate=4, block_config=(2, 2)),
        16,
        False,
    ),
    "ResNet10": (
        lambda: nets.resnet10(
            spatial_dims=3, n_input_channels=1, num_classes=CLASSES, widen_factor=0.25
        ),
        16,
        False,
    ),
}
METHODS = ("ranp-f", "vanilla", "random")
SPARSITIES = (0.5, 0.9)
EXPORTERS = ("torchscript", "dynamo")


def _statistics(module: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm running statistics away from 0 and 1, so that inference mode is tested."""
    generator = torch.Generator().manual_seed(0)
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            assert layer.running_mean is not None and layer.running_var is not None
            shape = layer.running_mean.shape
            layer.running_mean.copy_(0.2 * torch.rand(shape, generator=generator) - 0.1)
            layer.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
    return module


def exported(name: str) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """The network exported at batch 2, an input batch and labels for it."""
    build, size, per_voxel = NETWORKS[name]
    torch.manual_seed(0)
    module = _statistics(build()).eval()
    inputs = torch.randn((2, 1, size, size, size), generator=torch.Generator().manual_seed(1))
    model = export_module(module, inputs, input_names=["input"])
    shape = (2, size, size, size) if per_voxel else (2,)
    labels = np.random.default_rng(0).integers(0, CLASSES, shape)
    return separate_aliases(model), inputs.numpy(), labels


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_round_trip_evaluates_as_onnxruntime_does(name: str) -> None:
    model, inputs, _ = exported(name)
    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"input": inputs})
    module = to_torch(model).eval()
    with torch.no_grad():
        output = module(torch.from_numpy(inputs))
    outputs = output if isinstance(output, tuple | list) else (output,)
    for got, want in zip(outputs, expected, strict=True):
        scale = max(float(np.abs(want).max()), 1.0)
        assert np.abs(got.numpy() - want).max() <= 1e-4 * scale


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_method_prunes_exactly_or_refuses_clearly(name: str) -> None:
    model, inputs, labels = exported(name)
    graph = analyse(model)
    scoring = score_model(graph, [Batch({"input": inputs}, labels)], PruneOptions(device="cpu"))
    full_macs = None
    for method in METHODS:
        achieved = []
        for sparsity in SPARSITIES:
            options = PruneOptions(method=method, sparsity=sparsity, device="cpu")
            try:
                result: PruneResult = prune_scored(graph, scoring, options)
            except PlanError as error:
                message = str(error)
                assert "\n" not in message and "keeps every channel" in message, message
                achieved.append(achieved[-1] if achieved else None)
                continue
            validation = result.validation
            assert validation is not None and validation.worst[1] <= 1e-4
            # The proof ran node by node.
            assert validation.conclusive and validation.tensors > 0, validation
            full_macs = result.before.totals.macs
            assert result.after.totals.macs < full_macs
            onnx.checker.check_model(result.model, full_check=True)
            achieved.append(result.after.totals.macs)
        measured = [m for m in achieved if m is not None]
        assert measured == sorted(measured, reverse=True), (method, achieved)
    assert full_macs is not None, "no method pruned anything"


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_prune_module_shrinks_the_class_in_place_and_it_trains(name: str) -> None:
    build, size, per_voxel = NETWORKS[name]
    torch.manual_seed(0)
    module = build()
    kind, before = type(module), sum(p.numel() for p in module.parameters())
    x = torch.randn((2, 1, size, size, size), generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, CLASSES, (2, size, size, size) if per_voxel else (2,))
    result = prune_module(module, x, [(x, labels)], sparsity=0.5, method="ranp-f")
    assert result.in_place, result.reason
    assert result.module is module and type(module) is kind
    assert result.module_error <= 1e-4
    check_layers_agree_with_their_tensors(module)
    assert sum(p.numel() for p in module.parameters()) < before
    losses = train_steps(module, x, labels)
    assert losses[-1] < losses[0]


#: Transformer encoders: name -> (constructor, spatial size), small enough for seconds.
#: SwinUNETR needs sizes divisible by 32 and more than one voxel at its bottleneck (its
#: InstanceNorm), hence 32 x 32 x 64.
TRANSFORMERS: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, int, int]]] = {
    "UNETR": (
        lambda: nets.UNETR(
            1, CLASSES, img_size=32, feature_size=4, hidden_size=48, mlp_dim=96, num_heads=4
        ),
        (32, 32, 32),
    ),
    "SwinUNETR": (
        lambda: nets.SwinUNETR(
            1, CLASSES, feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=4
        ),
        (32, 32, 64),
    ),
}
TRANSFORMER_CASES = [(name, exporter) for name in TRANSFORMERS for exporter in EXPORTERS]


@functools.cache
def exported_transformer(name: str, exporter: str) -> tuple[onnx.ModelProto, np.ndarray]:
    """The network exported at batch 2 with ``exporter``, and an input batch."""
    pytest.importorskip("einops")  # MONAI's attention blocks rearrange with it
    build, size = TRANSFORMERS[name]
    torch.manual_seed(0)
    module = build().eval()
    inputs = torch.randn((2, 1, *size), generator=torch.Generator().manual_seed(1))
    model = export_module(module, inputs, exporter=exporter, input_names=["input"])
    return separate_aliases(model), inputs.numpy()


@pytest.mark.parametrize(("name", "exporter"), TRANSFORMER_CASES)
def test_transformer_round_trip_evaluates_as_onnxruntime_does(name: str, exporter: str) -> None:
    model, inputs = exported_transformer(name, exporter)
    (want,) = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"input": inputs})
    with torch.no_grad():
        got = to_torch(model).eval()(torch.from_numpy(inputs)).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(float(np.abs(want).max()), 1.0)


@pytest.mark.parametrize(("name", "exporter"), TRANSFORMER_CASES)
def test_transformer_convolutions_prune_exactly_and_the_transformer_stays_whole(
    name: str, exporter: str
) -> None:
    model, inputs = exported_transformer(name, exporter)
    graph = analyse(model)
    labels = np.random.default_rng(0).integers(0, CLASSES, (2, *inputs.shape[2:]))
    options = PruneOptions(method="ranp-f", device="cpu")
    scoring = score_model(graph, [Batch({"input": inputs}, labels)], options)
    explanation = {layer.node: layer for layer in explain(graph).layers}
    macs = []
    for sparsity in SPARSITIES:
        options = PruneOptions(method="ranp-f", sparsity=sparsity, device="cpu")
        result = prune_scored(graph, scoring, options)
        validation = result.validation
        assert validation is not None and validation.worst[1] <= 1e-4
        assert validation.conclusive and validation.tensors > 0, validation
        assert result.after.totals.macs < result.before.totals.macs
        assert result.before.uncounted == {}
        macs.append(result.after.totals.macs)
        pruned = analyse(result.model, graph.input_shapes)
        for node in graph.nodes:
            if node.op_type in ("MatMul", "Einsum", "Softmax", "LayerNormalization"):
                for tensor in (*node.inputs, *node.outputs):
                    assert pruned.shape(tensor) == graph.shape(tensor), (node.name, tensor)
    assert macs[1] < macs[0]
    for node in graph.nodes:
        if node.op_type == "MatMul":  # the transformer's linear layers, on [N, tokens, F]
            layer = explanation[node.name]
            assert not layer.prunable and layer.reasons, node.name
            assert f"(node '{node.name}')" in layer.reasons[0]
    # The patch embedding's channels become the tokens' features.
    embedding = next(
        node for node in graph.nodes if node.op_type == "Conv" and "patch_embed" in node.inputs[1]
    )
    assert not explanation[embedding.name].prunable
    assert "Transpose moves the channel axis" in explanation[embedding.name].reasons[0]
