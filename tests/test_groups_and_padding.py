"""GroupNorm's channel groups and zero-padded channels on small graphs, under the oracle.

A GroupNorm (decomposed by the exporters, or the native op) is pruned in whole groups; a
constant Pad of the channel axis and a Concat of a zeros tensor add channels that no
layer computes, which go with the layers they meet and are counted when they are kept.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from builders import export_module, make_model, random_weights
from hara_resnet import ResNet
from onnx import helper, numpy_helper
from oracle import random_prune
from torch import nn

from ranp_onnx.analysis.channels import ChannelAnalysis, analyse_channels
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.errors import ModelLoadError
from ranp_onnx.reporting.explain import explain, format_explanation
from ranp_onnx.rewrite.oracle import masked_original, validate
from ranp_onnx.rewrite.surgery import rewrite

F = nn.functional


class GroupNormNet(nn.Module):
    def __init__(self, affine: bool = True) -> None:
        super().__init__()
        self.a = nn.Conv3d(2, 16, 3, padding=1)
        self.norm = nn.GroupNorm(4, 16, affine=affine)
        self.head = nn.Conv3d(16, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.norm(self.a(x))))


def _randomised(net: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    for layer in net.modules():
        if isinstance(layer, nn.GroupNorm) and layer.weight is not None:
            layer.weight.data = 0.5 + torch.rand(layer.weight.shape, generator=generator)
            layer.bias.data = torch.randn(layer.bias.shape, generator=generator)
    return net.eval()


def _units_of(channels: ChannelAnalysis, node: str) -> list[list[int]]:
    """The channels of ``node``'s output in each unit, in unit order."""
    units = channels.layer(node).units
    return [np.flatnonzero(units == unit).tolist() for unit in dict.fromkeys(units.tolist())]


@pytest.mark.parametrize(("exporter", "opset"), [("torchscript", 17), ("dynamo", None)])
def test_decomposed_group_norm_prunes_whole_groups(exporter: str, opset: int | None) -> None:
    x = torch.randn(2, 2, 4, 4, 4)
    model = export_module(_randomised(GroupNormNet()), x, exporter=exporter, opset=opset)
    channels = analyse_channels(analyse(model))
    conv = channels.layers[0].node
    assert _units_of(channels, conv) == [list(range(start, start + 4)) for start in (0, 4, 8, 12)]
    (group,) = [g for g in channels.groups if g.layers == (conv,)]
    assert group.prunable and group.width == 4
    (note,) = group.notes
    assert note.endswith("into 4 groups of 4: they are pruned in whole groups"), note
    run = random_prune(model, 0.5, seed=3)
    assert run.error <= 1e-4
    kept = int(np.count_nonzero(run.keep[group.units]))
    assert 0 < kept < 4
    reshapes = [node for node in run.pruned.graph.node if node.op_type == "Reshape"]
    norm = next(node for node in run.pruned.graph.node if node.op_type == "InstanceNormalization")
    scale = _value(run.pruned, norm.input[1])
    assert scale.shape == (kept,)
    assert run.macs_after < run.macs_before
    assert reshapes  # the Reshape to [N, G, -1] now says G = kept


def _value(model: onnx.ModelProto, name: str) -> np.ndarray:
    """An initializer's or a Constant node's value."""
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise KeyError(name)


def _native_group_norm(opset: int, per_group: int) -> onnx.ModelProto:
    weights = random_weights(0, w1=(12, 2, 3, 3, 3), w2=(3, 12, 1, 1, 1))
    weights["s"] = np.linspace(0.5, 1.5, 12 // per_group).astype(np.float32)
    weights["b"] = np.linspace(-1, 1, 12 // per_group).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1] * 6),
        helper.make_node("GroupNormalization", ["a", "s", "b"], ["n"], num_groups=4),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "native",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2, 4, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3, 4, 4, 4])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def test_native_group_normalization_prunes_whole_groups() -> None:
    model = _native_group_norm(21, per_group=1)  # opset 21: scale and bias per channel
    channels = analyse_channels(analyse(model))
    assert _units_of(channels, "Conv_0") == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert channels.groups[0].notes == (
        "'GroupNormalization_1' normalises 4 groups of 3 channels: they are pruned in whole groups",
    )
    run = random_prune(model, 0.5, seed=1)
    assert run.error <= 1e-4
    kept = int(np.count_nonzero(run.keep[channels.groups[0].units]))
    assert 0 < kept < 4
    (norm,) = [node for node in run.pruned.graph.node if node.op_type == "GroupNormalization"]
    assert helper.get_attribute_value(norm.attribute[0]) == kept
    assert _value(run.pruned, norm.input[1]).shape == (kept * 3,)


def test_opset_18_group_normalization_is_refused_as_onnx_refuses_it() -> None:
    with pytest.raises(ModelLoadError, match="GroupNormalization is deprecated"):
        analyse(_native_group_norm(18, per_group=3))  # opset 18: scale and bias per group


class ChannelPad(nn.Module):
    """Channels 0-1 and 5-7 of the stream are padding around ``a``'s three."""

    def __init__(self, mode: str = "constant", pads: tuple[int, int] = (2, 3)) -> None:
        super().__init__()
        self.mode, self.pads = mode, pads
        self.a = nn.Conv3d(2, 3, 3, padding=1)
        self.b = nn.Conv3d(2, 3 + sum(pads), 3, padding=2)
        self.head = nn.Conv3d(3 + sum(pads), 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(torch.relu(self.a(x)), (1, 1, 1, 1, 1, 1, *self.pads), mode=self.mode)
        return self.head(torch.relu(padded + self.b(x)))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_channel_pad_pads_by_the_kept_padded_channels(exporter: str) -> None:
    model = export_module(ChannelPad().eval(), torch.randn(2, 2, 4, 4, 4), exporter=exporter)
    graph = analyse(model)
    channels = analyse_channels(graph)
    a, b = channels.layers[0].node, channels.layers[1].node
    assert [g.layers for g in channels.groups if g.prunable] == [(a, b), (b,)]
    padded = next(g for g in channels.groups if g.layers == (b,))
    assert padded.width == 5
    assert all("pads channels" in note for note in padded.notes) and len(padded.notes) == 2
    keep = np.ones(channels.unit_count, dtype=bool)
    b_units = channels.layer(b).units
    keep[b_units[[0, 3, 6]]] = False  # one padded before, one of a's, one padded after
    pruned = rewrite(channels, keep)
    result = validate(graph, pruned, channels.kept_indices(keep))
    assert result.worst[1] <= 1e-4 and result.conclusive
    (pad,) = [node for node in pruned.graph.node if node.op_type == "Pad"]
    assert _value(pruned, pad.input[1]).tolist() == [0, 1, 1, 1, 1, 0, 2, 1, 1, 1]
    run = random_prune(model, 0.6, seed=5)
    assert run.error <= 1e-4 and run.macs_after < run.macs_before


@pytest.mark.parametrize(
    ("mode", "pads", "reason"),
    [("reflect", (1, 1), "Pad of the channel axis in mode 'reflect' copies channels"),
     ("edge", (0, 2), "Pad of the channel axis in mode 'edge' copies channels"),
     ("constant", (-1, 2), "Pad crops the channel axis")],
)  # fmt: skip
def test_channel_pad_that_copies_or_crops_keeps_channels_whole(
    mode: str, pads: tuple[int, int], reason: str
) -> None:
    width = 3 + sum(pads)
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"]),
            helper.make_node("Pad", ["a", "pads"], ["p"], mode=mode),
            helper.make_node("Conv", ["p", "w2"], ["y"]),
        ],
        [("x", [2, 2, 4, 4, 4])],
        [("y", None)],
        {
            **random_weights(0, w1=(3, 2, 1, 1, 1), w2=(2, width, 1, 1, 1)),
            "pads": np.array([0, pads[0], 0, 0, 0, 0, pads[1], 0, 0, 0], dtype=np.int64),
        },
    )
    (group, _) = analyse_channels(analyse(model)).groups
    assert group.reason == f"{reason} (node 'Pad_1')"


class PadFromSize(nn.Module):
    """``F.pad`` by ``planes - x.size(1)``: a channel padding computed from the shape."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv3d(2, 3, 1), nn.Conv3d(2, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return torch.relu(self.b(x) + F.pad(y, (0, 0, 0, 0, 0, 0, 0, 5 - y.size(1))))


def test_channel_pad_computed_from_the_shape_keeps_channels_whole() -> None:
    x = torch.randn(2, 2, 4, 4, 4)
    # At fixed shapes the tracer records ``y.size(1)`` as a constant: the Pad prunes.
    assert random_prune(export_module(PadFromSize().eval(), x), 0.5).error <= 1e-4
    dynamic = {"input": {0: "batch"}}
    model = export_module(PadFromSize().eval(), x, input_names=["input"], dynamic_axes=dynamic)
    channels = analyse_channels(analyse(model, {"input": (2, 2, 4, 4, 4)}))
    assert {g.layers: g.reasons for g in channels.groups}[("/a/Conv",)] == (
        "Pad of the channel axis by amounts computed from shapes (node '/Pad')",
    )


def _hara_block_model(batch: str | None) -> onnx.ModelProto:
    """Hara's ``_downsample_basic_block`` around one block (cat of ``out`` and zeros)."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.conv = nn.Conv3d(1, 4, 3, padding=1), nn.Conv3d(4, 8, 3, 2, 1)
            self.head = nn.Conv3d(8, 2, 1)
            self.shortcut = partial(ResNet._downsample_basic_block, self, planes=8, stride=2)
            self.identity_data = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.stem(x))
            return self.head(torch.relu(self.conv(x) + self.shortcut(x)))

    dynamic = {"input": {0: batch}} if batch else None
    return export_module(
        Block().eval(), torch.randn(2, 1, 4, 4, 4), input_names=["input"], dynamic_axes=dynamic
    )


@pytest.mark.parametrize("zeros_removed", [3, 0], ids=["zeros-pruned", "identity-only"])
def test_zeros_computed_from_the_batch_follow_the_pruned_width(zeros_removed: int) -> None:
    """``planes - out.size(1)`` changes with the identity even where the zeros keep all."""
    model = _hara_block_model("batch")
    graph = analyse(model, {"input": (2, 1, 4, 4, 4)})
    channels = analyse_channels(graph)
    zeros = next(g for g in channels.groups if g.layers == ("/conv/Conv",))
    assert zeros.notes == (
        "'/Concat_1' concatenates the constant '/ConstantOfShape_output_0' as channels 4-7 of "
        "'/Concat_1_output_0': no layer upstream computes them, they are pruned with the "
        "layers they meet",
    )
    keep = np.ones(channels.unit_count, dtype=bool)
    keep[zeros.units[:zeros_removed]] = False
    keep[channels.layer("/stem/Conv").units[1]] = False
    pruned = rewrite(channels, keep)
    assert validate(graph, pruned, channels.kept_indices(keep)).worst[1] <= 1e-4
    # The zeros' shape is still computed: the pruned model takes any batch size.
    x = np.random.default_rng(0).standard_normal((3, 1, 4, 4, 4)).astype(np.float32)
    masked = masked_original(graph, channels.kept_indices(keep))
    want = onnxruntime.InferenceSession(masked.SerializeToString()).run(None, {"input": x})[0]
    got = onnxruntime.InferenceSession(pruned.SerializeToString()).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_zeros_that_lose_every_channel_leave_the_concat() -> None:
    model = _hara_block_model(None)
    graph = analyse(model)
    channels = analyse_channels(graph)
    zeros = next(g for g in channels.groups if g.layers == ("/conv/Conv",))
    keep = np.ones(channels.unit_count, dtype=bool)
    keep[zeros.units] = False
    pruned = rewrite(channels, keep)
    assert validate(graph, pruned, channels.kept_indices(keep)).worst[1] <= 1e-4
    # At fixed shapes the tracer stores the zeros as a constant, which is dropped.
    (concat,) = [n for n in pruned.graph.node if "/AveragePool_output_0" in n.input[:1]]
    assert concat.op_type == "Concat" and list(concat.input) == ["/AveragePool_output_0"]


class ZerosLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.head = nn.Conv3d(1, 4, 3, padding=1), nn.Conv3d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return self.head(torch.cat([y, torch.zeros_like(y)], 1))


def test_zeros_shaped_like_an_activation_are_stored_or_kept_whole() -> None:
    x = torch.randn(2, 1, 4, 4, 4)
    fixed = export_module(ZerosLike().eval(), x, input_names=["input"])
    assert random_prune(fixed, 0.5, seed=2).error <= 1e-4  # fixed shapes: stored, exact
    dynamic = export_module(
        ZerosLike().eval(), x, input_names=["input"], dynamic_axes={"input": {0: "batch"}}
    )
    channels = analyse_channels(analyse(dynamic, {"input": (2, 1, 4, 4, 4)}))
    # Its width follows y's at run time and a stored value fits one batch size only: the
    # zeros and y are kept whole.
    reason = (
        "'/ConstantOfShape_output_0' is computed from the shape of '/Relu_output_0' and op "
        "'ConstantOfShape' cannot be given the pruned channel count"
    )
    zeros = channels.spaces[("/ConstantOfShape_output_0", 1)]
    assert {channels.unit_fixed_reason[unit] for unit in zeros} == {reason}
    (group,) = [g for g in channels.groups if g.layers == ("/a/Conv",)]
    assert group.reasons == (reason,)


def test_explain_says_how_channels_were_grouped() -> None:
    model = export_module(_randomised(GroupNormNet()), torch.randn(2, 2, 4, 4, 4))
    explanation = explain(analyse(model))
    group = explanation.groups[0]
    assert (group.width, group.unit_channels) == (4, 4)
    assert group.to_json()["channels_per_unit"] == 4
    text = format_explanation(explanation)
    assert "group 0 (4 units of 4 channels, prunable)" in text
    assert "'/norm/Reshape' folds the 16 channels of '/a/Conv_output_0' into 4 groups" in text


@pytest.mark.parametrize("opset", [10, 18])
def test_channel_pad_with_a_constant_prunes_exactly(opset: int) -> None:
    """A non-zero fill goes with the channels it meets too; pads as attributes or inputs."""
    pads = [0, 1, 0, 0, 0, 0, 2, 0, 0, 0]
    weights = random_weights(0, w1=(3, 2, 1, 1, 1), w2=(6, 2, 1, 1, 1), w3=(2, 6, 1, 1, 1))
    if opset < 11:
        pad = helper.make_node("Pad", ["a"], ["p"], pads=pads, value=1.5)
    else:
        weights["pads"] = np.array(pads, dtype=np.int64)
        weights["fill"] = np.array(1.5, dtype=np.float32)
        pad = helper.make_node("Pad", ["a", "pads", "fill"], ["p"])
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"]),
            pad,
            helper.make_node("Conv", ["x", "w2"], ["b"]),
            helper.make_node("Add", ["p", "b"], ["s"]),
            helper.make_node("Relu", ["s"], ["r"]),
            helper.make_node("Conv", ["r", "w3"], ["y"]),
        ],
        [("x", [2, 2, 4, 4, 4])],
        [("y", None)],
        weights,
        opset=opset,
    )
    channels = analyse_channels(analyse(model))
    padded = next(g for g in channels.groups if g.layers == ("Conv_2",))
    assert padded.width == 3
    assert padded.notes[0] == (
        "'Pad_1' pads channels 0-0 of 'p' with the constant 1.5: no layer upstream computes "
        "them, they are pruned with the layers they meet"
    )
    removed = 0
    for seed in range(3):
        run = random_prune(model, 0.5, seed=seed)
        assert run.error <= 1e-4 and run.macs_after < run.macs_before
        removed += int(np.count_nonzero(~run.keep[padded.units]))
    assert removed > 0  # padded channels were removed, not only kept
