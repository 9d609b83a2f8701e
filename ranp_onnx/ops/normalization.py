"""Normalisation layers: batch, instance, group and layer normalisation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LayerGeometry, OpCost, OpRule, numel, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo

#: Standard FLOPs per element of a normalisation that computes its statistics at run time:
#: mean (1), variance (3), normalise (2), affine (2).
STATISTICS_FLOPS = 8
#: The reference counter's FLOPs per element of an affine normalisation layer.
PAPER_FLOPS = 4


class _Normalization(OpRule):
    parameter_inputs = (1, 2)
    standard_flops_per_element = STATISTICS_FLOPS

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry:
        """Channels of the normalised tensor (axis 1)."""
        shape = graph.shape(node.inputs[0])
        channels = shape[1] if len(shape) > 1 else shape[0]
        return LayerGeometry(channels_in=channels, channels_out=channels)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """A fixed number of FLOPs per output element."""
        elements = numel(graph.shape(node.outputs[0]))
        return OpCost(
            flops=self.flops_per_element(node) * elements,
            paper_flops=PAPER_FLOPS * elements,
            paper_memory=True,
        )

    def flops_per_element(self, node: NodeInfo) -> int:
        """Standard FLOPs per element."""
        return self.standard_flops_per_element


@register
class BatchNormalizationRule(_Normalization):
    """BatchNormalization; inputs 3 and 4 (running statistics) are buffers, not parameters.

    In inference mode it is a per-channel scale and shift: 2 FLOPs per element. In training
    mode it computes batch statistics like the other normalisations.
    """

    op_types = ("BatchNormalization",)

    def flops_per_element(self, node: NodeInfo) -> int:
        """2 in inference mode, 8 in training mode."""
        return STATISTICS_FLOPS if node.attribute("training_mode", 0) else 2


@register
class InstanceNormalizationRule(_Normalization):
    """InstanceNormalization: statistics per sample and channel."""

    op_types = ("InstanceNormalization",)


@register
class GroupNormalizationRule(_Normalization):
    """GroupNormalization: statistics per sample and channel group."""

    op_types = ("GroupNormalization",)


@register
class LayerNormalizationRule(_Normalization):
    """LayerNormalization: statistics over the trailing axes from ``axis``."""

    op_types = ("LayerNormalization",)
