"""Softmax, LogSoftmax and the Reduce family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OpCost, OpRule, numel, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo


@register
class SoftmaxRule(OpRule):
    """Softmax / LogSoftmax: exp, sum and divide, 3 FLOPs per element.

    The reference counter charges batch x (3 C - 1) with C the size of the softmax axis,
    ignoring every other axis (so a per-voxel softmax costs almost nothing there).
    """

    op_types = ("Softmax", "LogSoftmax")

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Three FLOPs per element."""
        shape = graph.shape(node.inputs[0])
        axis = int(node.attribute("axis", -1 if graph.opset >= 13 else 1)) % len(shape)
        return OpCost(
            flops=3 * numel(shape),
            paper_flops=shape[0] * (3 * shape[axis] - 1),
            paper_memory=True,
        )


@register
class ReduceRule(OpRule):
    """Reductions: one FLOP per input element."""

    op_types = (
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
        "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
    )  # fmt: skip

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per input element."""
        return OpCost(flops=numel(graph.shape(node.inputs[0])))
