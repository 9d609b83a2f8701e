"""Gemm and MatMul: fully connected layers (features on the last axis)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LayerGeometry, OpCost, OpRule, numel, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo


@register
class GemmRule(OpRule):
    """Gemm: ``Y = alpha * A' B' + beta * C`` with ``A'`` of shape [M, K], ``B'`` [K, N]."""

    op_types = ("Gemm",)
    parameter_inputs = (1, 2)

    def _dims(self, node: NodeInfo, graph: GraphAnalysis) -> tuple[int, int, int]:
        a = graph.shape(node.inputs[0])
        b = graph.shape(node.inputs[1])
        m, k = (a[1], a[0]) if node.attribute("transA", 0) else (a[0], a[1])
        n = b[0] if node.attribute("transB", 0) else b[1]
        return m, k, n

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry:
        """In and out features."""
        _, k, n = self._dims(node, graph)
        return LayerGeometry(channels_in=k, channels_out=n)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """M x N x K MACs, plus one FLOP per output for the bias and each non-unit scale."""
        m, k, n = self._dims(node, graph)
        macs = m * n * k
        has_c = len(node.inputs) > 2 and bool(node.inputs[2])
        extra = (
            int(has_c)
            + int(float(node.attribute("alpha", 1.0)) != 1.0)
            + int(has_c and float(node.attribute("beta", 1.0)) != 1.0)
        )
        return OpCost(
            macs=macs, flops=2 * macs + extra * m * n, paper_flops=2 * macs, paper_memory=True
        )


@register
class MatMulRule(OpRule):
    """MatMul with numpy broadcasting: ``[..., M, K] @ [..., K, N]``.

    With a weight initializer it is a Linear layer, which the reference counter counts
    (2 x in x out per row, output memory); between two activations it counts nothing.
    """

    op_types = ("MatMul",)
    parameter_inputs = (0, 1)

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry:
        """In and out features (last axes)."""
        a = graph.shape(node.inputs[0])
        b = graph.shape(node.inputs[1])
        return LayerGeometry(channels_in=a[-1], channels_out=b[-1] if len(b) > 1 else 1)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Output elements times the shared dimension K."""
        a = graph.shape(node.inputs[0])
        out = graph.shape(node.outputs[0])
        macs = numel(out) * a[-1]
        linear = any(graph.is_initializer(name) for name in node.inputs[:2])
        return OpCost(
            macs=macs,
            flops=2 * macs,
            paper_flops=2 * macs if linear else 0,
            paper_memory=linear,
        )
