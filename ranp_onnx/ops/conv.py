"""Conv and ConvTranspose (1D, 2D, 3D; grouped and depthwise)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import InputShapeError, UnsupportedModelError
from .base import (
    EVERYWHERE,
    AutogradMemory,
    LayerGeometry,
    OpCost,
    OpRule,
    TrainingContext,
    numel,
    register,
)
from .conv_memory import convolution_memory
from .kernels.evaluation import optional, required, torch_pads, window_pads

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext, RewriteContext


def _has_bias(node: NodeInfo) -> bool:
    return len(node.inputs) > 2 and bool(node.inputs[2])


def check_window_fits(node: NodeInfo, graph: GraphAnalysis, kernel: Sequence[int]) -> None:
    """Refuse a spatial axis shorter than the (dilated) window, padding included.

    ONNX shape inference rounds the negative span toward zero there and reports one output
    where torch and onnxruntime's Conv refuse the input. ``auto_pad=SAME_*`` always fits.

    Raises:
        InputShapeError: The window does not fit on some axis.
    """
    auto_pad = str(node.attribute("auto_pad", "NOTSET"))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") or not kernel:
        return
    rank = len(kernel)
    spatial = graph.shape(node.inputs[0])[2:]
    pads = list(node.attribute("pads", [0] * 2 * rank)) if auto_pad == "NOTSET" else [0] * 2 * rank
    dilations = list(node.attribute("dilations", [1] * rank))
    for axis in range(min(rank, len(spatial))):
        window = int(dilations[axis]) * (int(kernel[axis]) - 1) + 1
        padded = spatial[axis] + int(pads[axis]) + int(pads[axis + rank])
        if padded < window:
            raise InputShapeError(
                f"node '{node.name}' ({node.op_type}) has a window of {window} on spatial "
                f"axis {axis} but its padded input is {padded} long: the input is too small "
                "for the graph"
            )


def _check_channels(
    node: NodeInfo, graph: GraphAnalysis, weight_channels_in: int, channels_out: int
) -> None:
    """Refuse input channels or a bias that do not fit the weight."""
    data = graph.shape(node.inputs[0])
    if len(data) < 2 or data[1] != weight_channels_in:
        raise InputShapeError(
            f"node '{node.name}' ({node.op_type}) reads {data[1] if len(data) > 1 else '?'} "
            f"input channels from '{node.inputs[0]}' but its weight expects "
            f"{weight_channels_in}: the input shape does not fit the graph"
        )
    if _has_bias(node) and graph.shape(node.inputs[2]) != (channels_out,):
        raise InputShapeError(
            f"node '{node.name}' ({node.op_type}) has a bias of shape "
            f"{graph.shape(node.inputs[2])} for {channels_out} output channels"
        )


class _Convolution(OpRule):
    """Conv and ConvTranspose: channel coupling and the rewrite of grouped weights.

    Attributes:
        rows_index: Which tensor the weight's axis 0 indexes ("output" for Conv, "input"
            for ConvTranspose); axis 1 indexes the other one, per group.
    """

    parameter_inputs = (1, 2)
    masked_inputs = ((0, 1),)
    bias_input = 2
    initializer_roles: ClassVar[dict[int, str]] = {1: "weight", 2: "bias"}
    is_convolution = True
    rows_index: ClassVar[str] = "output"
    autocast = EVERYWHERE

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """Input and weight, and the scratch of the backend torch picks (``conv_memory``)."""
        return convolution_memory(node, graph, context, transposed=self.rows_index == "input")

    def _per_group_tensor(self, node: NodeInfo) -> str:
        return node.inputs[0] if self.rows_index == "output" else node.outputs[0]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Output channels are neurons; the weight's axes are tied to the channels they index.

        Depthwise convs (group == input channels) tie each output to the input it reads;
        other grouped convs keep the group attribute valid by pruning every group equally.
        """
        x, weight, y = node.inputs[0], node.inputs[1], node.outputs[0]
        if not graph.tensors[weight].static:
            channels.block_node(node, f"{node.op_type} weight is computed at run time")
            return
        groups = int(node.attribute("group", 1))
        x_space, y_space = channels.space(x), channels.space(y)
        rows, per_group = (y_space, x_space) if self.rows_index == "output" else (x_space, y_space)
        channels.member(node, x_space, y_space)
        channels.tie(channels.space(weight, 0), rows)
        if _has_bias(node):
            channels.tie(channels.space(node.inputs[2], 0), y_space)
        channels.add_layer(node, y_space, weight)
        if groups == 1:
            channels.tie(channels.space(weight, 1), per_group)
        elif groups == x_space.size:
            channels.tie_blocks(y_space, x_space, y_space.size // x_space.size)
        elif len(graph.consumers(weight)) > 1:
            channels.block_node(node, f"grouped {node.op_type} shares its weight with another node")
        else:
            channels.equal_groups(x_space, groups, node)
            channels.equal_groups(y_space, groups, node)
            channels.derive(weight, 1, per_group, groups)

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """Depthwise: group = new channel count; grouped: slice each group's block of axis 1."""
        groups = int(node.attribute("group", 1))
        if groups == 1:
            return
        if groups == graph.shape(node.inputs[0])[1]:
            context.set_attribute(node, "group", context.new_size(node.inputs[0]))
            return
        tensor = self._per_group_tensor(node)
        kept = context.kept_channels(tensor)
        if kept is None:
            return
        weight = node.inputs[1]
        channels = graph.shape(tensor)[1]
        context.set_value(
            weight, slice_grouped_axis(context.value(weight), kept, groups, channels, axis=1)
        )


@register
class ConvRule(_Convolution):
    """Conv: weight ``[C_out, C_in/groups, k...]``.

    MACs = output elements x C_in/groups x prod(kernel); the output shape comes from shape
    inference, so explicit pads, dilations and ``auto_pad=SAME_*`` are all exact.
    """

    op_types = ("Conv",)

    def neuron_weights(self, node: NodeInfo, weight: np.ndarray) -> np.ndarray:
        """``[C_out, C_in/groups * prod(kernel)]``."""
        return weight.reshape(weight.shape[0], -1)

    def check_shapes(self, node: NodeInfo, graph: GraphAnalysis) -> None:
        """Input channels equal ``weight[1] * group``, C_out biases, the kernel fits."""
        weight = graph.shape(node.inputs[1])
        _check_channels(node, graph, weight[1] * int(node.attribute("group", 1)), weight[0])
        check_window_fits(node, graph, weight[2:])

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry:
        """Channels from the weight, strides from the attributes."""
        weight = graph.shape(node.inputs[1])
        kernel = tuple(weight[2:])
        return LayerGeometry(
            channels_in=graph.shape(node.inputs[0])[1],
            channels_out=weight[0],
            kernel=kernel,
            strides=tuple(node.attribute("strides", [1] * len(kernel))),
            groups=int(node.attribute("group", 1)),
        )

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Output elements times the weights each one reads."""
        weight = graph.shape(node.inputs[1])
        out_numel = numel(graph.shape(node.outputs[0]))
        per_output = numel(weight[1:])
        bias = 1 if _has_bias(node) else 0
        macs = out_numel * per_output
        return OpCost(
            macs=macs,
            flops=2 * macs + bias * out_numel,
            paper_flops=out_numel * (per_output + bias),
            paper_memory=True,
        )

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.conv{1,2,3}d``; asymmetric and ``auto_pad`` padding go through ``F.pad``."""
        import torch.nn.functional as F

        x, weight, bias = required(inputs, 0), required(inputs, 1), optional(inputs, 2)
        spatial = _spatial_rank(node, x)
        kernel = list(weight.shape[2:])
        strides = [int(s) for s in node.attribute("strides", [1] * spatial)]
        dilations = [int(d) for d in node.attribute("dilations", [1] * spatial)]
        begins, ends = window_pads(node, list(x.shape[2:]), kernel, dilations)
        if begins != ends:
            x = F.pad(x, torch_pads(begins, ends))
            begins = [0] * spatial
        convolution = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
        groups = int(node.attribute("group", 1))
        return [convolution(x, weight, bias, strides, begins, dilations, groups)]


@register
class ConvTransposeRule(_Convolution):
    """ConvTranspose: weight ``[C_in, C_out/groups, k...]``.

    Every input element is multiplied into C_out/groups x prod(kernel) outputs, so
    MACs = input elements x C_out/groups x prod(kernel). Counting output elements x C_in x
    prod(kernel) instead, as most counters (and the RANP reference) do, overcounts by
    prod(stride). The ``ranp-paper`` convention keeps the reference's number.
    """

    op_types = ("ConvTranspose",)
    rows_index = "input"

    def neuron_weights(self, node: NodeInfo, weight: np.ndarray) -> np.ndarray:
        """Regroup ``[C_in, C_out/groups, k...]`` into ``[C_out, C_in/groups * prod(k)]``."""
        groups = int(node.attribute("group", 1))
        in_channels, per_group = weight.shape[0], weight.shape[1]
        window = int(np.prod(weight.shape[2:], dtype=np.int64))
        grouped = weight.reshape(groups, in_channels // groups, per_group, window)
        return grouped.transpose(0, 2, 1, 3).reshape(groups * per_group, -1)

    def check_shapes(self, node: NodeInfo, graph: GraphAnalysis) -> None:
        """Input channels must equal ``weight[0]``; the bias has ``weight[1] * group``."""
        weight = graph.shape(node.inputs[1])
        _check_channels(node, graph, weight[0], weight[1] * int(node.attribute("group", 1)))

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry:
        """Channels from the weight (``C_out = weight[1] * groups``)."""
        weight = graph.shape(node.inputs[1])
        groups = int(node.attribute("group", 1))
        kernel = tuple(weight[2:])
        return LayerGeometry(
            channels_in=weight[0],
            channels_out=weight[1] * groups,
            kernel=kernel,
            strides=tuple(node.attribute("strides", [1] * len(kernel))),
            groups=groups,
        )

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Input elements times the outputs each one scatters into."""
        weight = graph.shape(node.inputs[1])
        groups = int(node.attribute("group", 1))
        in_numel = numel(graph.shape(node.inputs[0]))
        out_numel = numel(graph.shape(node.outputs[0]))
        bias = 1 if _has_bias(node) else 0
        macs = in_numel * numel(weight[1:])
        reference_per_output = (weight[0] // groups) * numel(weight[2:])
        return OpCost(
            macs=macs,
            flops=2 * macs + bias * out_numel,
            paper_flops=out_numel * (reference_per_output + bias),
            paper_memory=True,
        )

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.conv_transpose{1,2,3}d``; pads torch cannot express are cropped afterwards."""
        import torch.nn.functional as F

        x, weight, bias = required(inputs, 0), required(inputs, 1), optional(inputs, 2)
        spatial = _spatial_rank(node, x)
        strides = [int(s) for s in node.attribute("strides", [1] * spatial)]
        dilations = [int(d) for d in node.attribute("dilations", [1] * spatial)]
        extra = [int(p) for p in node.attribute("output_padding", [0] * spatial)]
        groups = int(node.attribute("group", 1))
        full = [
            stride * (size - 1) + (k - 1) * dilation + 1
            for size, k, stride, dilation in zip(x.shape[2:], weight.shape[2:], strides, dilations)
        ]
        begins, ends, sizes = _transpose_pads(node, list(x.shape[2:]), full, strides, extra)
        transpose = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[spatial - 1]
        natural = [f + e - 2 * b for f, e, b in zip(full, extra, begins)]
        native = (
            begins == ends
            and sizes == natural
            and all(0 <= p < max(s, d) for p, s, d in zip(extra, strides, dilations))
        )
        if native:
            return [transpose(x, weight, bias, strides, begins, extra, groups, dilations)]
        y = transpose(x, weight, None, strides, 0, 0, groups, dilations)
        y = F.pad(
            y, torch_pads([-b for b in begins], [o + b - f for o, b, f in zip(sizes, begins, full)])
        )
        if bias is not None:
            y = y + bias.reshape((1, -1) + (1,) * spatial)
        return [y]


def _spatial_rank(node: NodeInfo, x: torch.Tensor) -> int:
    spatial = x.dim() - 2
    if not 1 <= spatial <= 3:
        raise UnsupportedModelError(
            f"node '{node.name}' ({node.op_type}): {spatial} spatial dimensions; torch "
            "evaluation supports 1 to 3"
        )
    return spatial


def _transpose_pads(
    node: NodeInfo,
    sizes: list[int],
    full: list[int],
    strides: list[int],
    extra: list[int],
) -> tuple[list[int], list[int], list[int]]:
    """Return ConvTranspose (begins, ends, output sizes) from pads, output_shape or auto_pad.

    Given a target size (``output_shape``, or ``auto_pad`` SAME: input x stride), the total
    padding is split as onnxruntime splits it: the odd pad at the end for SAME_UPPER, at the
    beginning otherwise. An ``output_shape`` beyond the full result is padded with zeros.
    """
    spatial = len(sizes)
    auto_pad = str(node.attribute("auto_pad", "NOTSET"))
    target = node.attribute("output_shape")
    if target is not None:
        outputs = [int(o) for o in target][-spatial:]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        outputs = [size * stride for size, stride in zip(sizes, strides)]
    else:
        pads = [0] * (2 * spatial)
        if auto_pad != "VALID":
            pads = [int(p) for p in node.attribute("pads", pads)]
        begins, ends = pads[:spatial], pads[spatial:]
        outputs = [f + e - b - t for f, e, b, t in zip(full, extra, begins, ends)]
        return begins, ends, outputs
    begins, ends = [], []
    for out, length, padding in zip(outputs, full, extra):
        total = max(0, length + padding - out)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    if target is None:
        outputs = [f + e - b - t for f, e, b, t in zip(full, extra, begins, ends)]
    return begins, ends, outputs


def slice_grouped_axis(
    weight: np.ndarray, kept: np.ndarray, groups: int, channels: int, axis: int
) -> np.ndarray:
    """Slice a grouped weight's per-group axis by the channels each group keeps.

    ``weight`` has already been sliced along axis 0, so its rows still come in ``groups``
    equal blocks; row block g keeps ``kept`` channels of channel block g (equal counts, as
    the selection guarantees), taken in local coordinates along ``axis``.
    """
    block = channels // groups
    local = kept.reshape(groups, -1) - (np.arange(groups) * block)[:, None]
    rows = weight.shape[0] // groups
    parts = [np.take(weight[g * rows : (g + 1) * rows], local[g], axis=axis) for g in range(groups)]
    return np.concatenate(parts, axis=0)
