"""Resize and its deprecated form Upsample."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OpCost, OpRule, numel, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo


@register
class ResizeRule(OpRule):
    """Resize / Upsample: nearest is free; linear and cubic blend 2 or 4 inputs per axis.

    For d resized axes an output blends ``taps**d`` inputs: that many multiplies and one
    fewer adds. The reference counter counts interpolation as free.
    """

    op_types = ("Resize", "Upsample")

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
