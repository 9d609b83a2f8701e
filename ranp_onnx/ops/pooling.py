"""Pooling: MaxPool, AveragePool, LpPool and their global forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from .base import (
    Autocast,
    AutogradMemory,
    LayerGeometry,
    OpCost,
    OpRule,
    TrainingContext,
    numel,
    register,
)
from .conv import check_window_fits
from .coupling import pass_through
from .kernels.evaluation import required
from .kernels.windows import Window, average_pool, lp_pool, max_pool

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext


class _Pool(OpRule):
    autocast: ClassVar[Mapping[str, Autocast]] = {"cpu": "float32"}

    def check_shapes(self, node: NodeInfo, graph: GraphAnalysis) -> None:
        """The window fits the padded input (ONNX shape inference does not check)."""
        check_window_fits(node, graph, tuple(node.attribute("kernel_shape", ())))

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Pooling works per channel."""
        pass_through(node, graph, channels)

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry:
        """Channels unchanged; kernel and strides from the attributes."""
        shape = graph.shape(node.inputs[0])
        kernel = tuple(node.attribute("kernel_shape", ()))
        return LayerGeometry(
            channels_in=shape[1],
            channels_out=shape[1],
            kernel=kernel or None,
            strides=tuple(node.attribute("strides", [1] * len(kernel))) or None,
        )


@register
class MaxPoolRule(_Pool):
    """MaxPool: prod(kernel) - 1 comparisons per output; free in the reference counter."""

    op_types = ("MaxPool",)

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """The input (or its padded copy) and int64 indices of every output element."""
        indices = 8 * numel(graph.shape(node.outputs[0]))
        padded = _explicit_copy_bytes(node, graph, context)
        if padded:
            return AutogradMemory(saved_bytes=padded + indices)
        return AutogradMemory(saved_inputs=(0,), saved_bytes=indices)

    def evaluation_problem(self, node: NodeInfo, opset: int) -> str | None:
        """Indices in column-major order (``storage_order=1``) are not supported."""
        if len(node.outputs) > 1 and node.outputs[1] and node.attribute("storage_order", 0):
            return "the Indices output with storage_order=1 is not supported"
        return None

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.max_pool{1,2,3}d``, with explicit -inf padding where torch cannot pad."""
        x = required(inputs, 0)
        indices = len(node.outputs) > 1 and bool(node.outputs[1])
        return max_pool(x, Window.of(node, x), node, indices)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Comparisons per output element."""
        window = numel(tuple(node.attribute("kernel_shape")))
        return OpCost(flops=numel(graph.shape(node.outputs[0])) * (window - 1), paper_memory=True)


@register
class AveragePoolRule(_Pool):
    """AveragePool: prod(kernel) - 1 adds and a divide per output.

    The reference counter charges prod(kernel) + 1 per output.
    """

    op_types = ("AveragePool", "LpPool")

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """The input (torch's pooling keeps it); a padded copy where ONNX pads as torch cannot."""
        padded = _explicit_copy_bytes(node, graph, context)
        if padded or node.op_type == "LpPool":
            return AutogradMemory(saved_bytes=padded or context.nbytes(graph, node.inputs[0]))
        return AutogradMemory(saved_inputs=(0,))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.avg_pool{1,2,3}d`` where it matches, else window sums over explicit pads."""
        x = required(inputs, 0)
        window = Window.of(node, x)
        if node.op_type == "LpPool":
            return [lp_pool(x, window, float(node.attribute("p", 2)))]
        return [average_pool(x, window, bool(node.attribute("count_include_pad", 0)))]

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Adds and one divide per output element."""
        window = numel(tuple(node.attribute("kernel_shape")))
        out = numel(graph.shape(node.outputs[0]))
        return OpCost(flops=out * window, paper_flops=out * (window + 1), paper_memory=True)


class _GlobalPool(_Pool):
    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry:
        """The kernel is the whole spatial extent."""
        shape = graph.shape(node.inputs[0])
        return LayerGeometry(channels_in=shape[1], channels_out=shape[1], kernel=tuple(shape[2:]))


@register
class GlobalAveragePoolRule(_GlobalPool):
    """GlobalAveragePool: one add per input element (the divides replace the last adds).

    The reference counter treats it as an adaptive average pool: outputs x (window + 1).
    """

    op_types = ("GlobalAveragePool", "GlobalLpPool")

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """A mean keeps nothing; the Lp norm keeps its input."""
        if node.op_type == "GlobalAveragePool":
            return AutogradMemory()
        return AutogradMemory(saved_inputs=(0,))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Mean (or Lp norm) over the spatial axes, kept as size 1."""
        x = required(inputs, 0)
        axes = list(range(2, x.dim()))
        if node.op_type == "GlobalAveragePool":
            return [x.mean(axes, keepdim=True)]
        p = float(node.attribute("p", 2))
        return [x.abs().pow(p).sum(axes, keepdim=True).pow(1.0 / p)]

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per input element."""
        shape = graph.shape(node.inputs[0])
        out = numel(graph.shape(node.outputs[0]))
        window = numel(tuple(shape[2:]))
        return OpCost(flops=numel(shape), paper_flops=out * (window + 1), paper_memory=True)


@register
class GlobalMaxPoolRule(_GlobalPool):
    """GlobalMaxPool: window - 1 comparisons per output."""

    op_types = ("GlobalMaxPool",)

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """``amax`` keeps its input and output."""
        return AutogradMemory(saved_inputs=(0,), saved_outputs=(0,))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Maximum over the spatial axes, kept as size 1."""
        import torch

        x = required(inputs, 0)
        return [torch.amax(x, list(range(2, x.dim())), keepdim=True)]

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Comparisons per output element."""
        shape = graph.shape(node.inputs[0])
        out = numel(graph.shape(node.outputs[0]))
        return OpCost(flops=numel(shape) - out, paper_memory=True)


def _explicit_copy_bytes(node: NodeInfo, graph: GraphAnalysis, context: TrainingContext) -> int:
    """Bytes of the padded copy a pooling node makes where torch cannot pad, else 0."""
    shape = graph.shape(node.inputs[0])
    window = Window.for_shape(node, shape)
    if window.torch_native() and (
        node.op_type == "MaxPool" or all(d == 1 for d in window.dilations)
    ):
        return 0
    padding = window.explicit_padding(shape[2:])
    padded = list(shape)
    for axis in range(len(shape) - 2):
        padded[len(shape) - 1 - axis] += padding[2 * axis] + padding[2 * axis + 1]
    itemsize = context.itemsizes.get(node.inputs[0], graph.tensors[node.inputs[0]].itemsize)
    return numel(tuple(padded)) * itemsize
