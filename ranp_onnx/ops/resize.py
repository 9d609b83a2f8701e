"""Resize and its deprecated form Upsample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .base import AutogradMemory, OpCost, OpRule, TrainingContext, numel, register
from .coupling import depends_on_shapes, pass_through
from .kernels.evaluation import required
from .kernels.interpolation import ResizeMode, resize

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext, RewriteContext


@register
class ResizeRule(OpRule):
    """Resize / Upsample: nearest is free; linear and cubic blend 2 or 4 inputs per axis.

    For d resized axes an output blends ``taps**d`` inputs: that many multiplies and one
    fewer adds. The reference counter counts interpolation as free.
    """

    op_types = ("Resize", "Upsample")

    buffer_inputs = (1, 2, 3)

    def evaluation_problem(self, node: NodeInfo, opset: int) -> str | None:
        """tf_crop_and_resize and unknown modes are not supported."""
        return ResizeMode.of(node, opset).problem(node)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Nearest, linear or cubic interpolation, axis by axis, as onnxruntime computes it."""
        return [resize(required(inputs, 0), node, inputs, context.opset)]

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """Axis by axis: a gather per tap (``index_select`` keeps only its indices).

        Each resized axis makes an intermediate tensor; nearest gathers once, linear and
        cubic blend 2 or 4 gathered copies times their weights. The backward scatters the
        gradient back axis by axis into new zero-filled tensors.
        """
        x, y = node.inputs[0], node.outputs[0]
        before, after = graph.shape(x), graph.shape(y)
        itemsize = context.itemsizes.get(y, graph.tensors[y].itemsize)
        mode = ResizeMode.of(node, graph.opset).mode
        taps = {"nearest": 1, "linear": 2}.get(mode, 4)
        shape, sizes, indices = list(before), [numel(before) * itemsize], 0
        for axis, length in enumerate(after):
            if length != shape[axis]:
                shape[axis] = length
                sizes.append(numel(tuple(shape)) * itemsize)
                # int64 indices per tap; a blend also keeps each tap's float32 weights
                indices += (8 if taps == 1 else 12) * taps * length
        if len(sizes) == 1:
            return AutogradMemory.view()  # nothing resized: the input itself
        # While axis k is resized, tensor k - 1 (never the input) and tensor k are alive,
        # and a blend holds two more tensor-k-sized products.
        blend = 0 if taps == 1 else 2
        forward = max(
            (sizes[k - 1] if k > 1 else 0) + (1 + blend) * sizes[k] for k in range(1, len(sizes))
        )
        backward = max(sizes[k] + (1 + blend) * sizes[k - 1] for k in range(1, len(sizes)))
        return AutogradMemory(
            saved_bytes=indices,
            forward_scratch=max(forward - sizes[-1], 0),
            backward_scratch=max(backward - sizes[-1] - sizes[0], 0),
        )

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Channels pass through unless the channel axis itself is resized."""
        x, y = node.inputs[0], node.outputs[0]
        if graph.shape(x)[1:2] != graph.shape(y)[1:2]:
            channels.block_node(node, "Resize changes the channel axis")
            return
        pass_through(node, graph, channels)

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """A ``sizes`` input that spells out the channel count gets the new count."""
        if node.op_type != "Resize" or len(node.inputs) < 4 or not node.inputs[3]:
            return
        sizes_name = node.inputs[3]
        if graph.tensors[sizes_name].numel == 0 or depends_on_shapes(graph, sizes_name):
            return
        rank = len(graph.shape(node.inputs[0]))
        axes = [a % rank for a in node.attribute("axes", range(rank))]
        if 1 not in axes:
            return
        sizes = context.value(sizes_name).copy()
        sizes[axes.index(1)] = context.new_size(node.outputs[0])
        context.replace_input(node, 3, sizes)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Blend FLOPs per output element by mode."""
        mode = str(node.attribute("mode", "nearest"))
        taps = {"nearest": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "cubic": 4}.get(mode, 1)
        if taps == 1:
            return OpCost()
        before = graph.shape(node.inputs[0])
        after = graph.shape(node.outputs[0])
        resized_axes = sum(1 for a, b in zip(before, after) if a != b)
        blended = taps**resized_axes
        return OpCost(flops=numel(after) * (2 * blended - 1))
