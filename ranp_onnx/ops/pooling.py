"""Pooling: MaxPool, AveragePool, LpPool and their global forms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LayerGeometry, OpCost, OpRule, numel, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo


class _Pool(OpRule):
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

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Comparisons per output element."""
        shape = graph.shape(node.inputs[0])
        out = numel(graph.shape(node.outputs[0]))
        return OpCost(flops=numel(shape) - out, paper_memory=True)
