"""Elementwise binary and variadic arithmetic with numpy broadcasting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OpCost, OpRule, numel, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo


@register
class ArithmeticRule(OpRule):
    """Add, Sub, Mul, Div, Pow, Max, Min, Sum, Mean: (inputs - 1) FLOPs per output element.

    The reference counter counts none of them (its models call them functionally).
    """

    op_types = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod")

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per output element and extra operand."""
        operands = len([name for name in node.inputs if name])
        return OpCost(flops=max(operands - 1, 1) * numel(graph.shape(node.outputs[0])))


@register
class ComparisonRule(OpRule):
    """Comparisons and selection: one FLOP per output element."""

    op_types = (
        "Equal",
        "Greater",
        "Less",
        "GreaterOrEqual",
        "LessOrEqual",
        "Where",
        "And",
        "Or",
        "Xor",
    )

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per output element."""
        return OpCost(flops=numel(graph.shape(node.outputs[0])))
