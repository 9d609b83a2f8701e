"""Conv and ConvTranspose (1D, 2D, 3D; grouped and depthwise)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LayerGeometry, OpCost, OpRule, numel, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo


def _has_bias(node: NodeInfo) -> bool:
    return len(node.inputs) > 2 and bool(node.inputs[2])


@register
class ConvRule(OpRule):
    """Conv: weight ``[C_out, C_in/groups, k...]``.

    MACs = output elements x C_in/groups x prod(kernel); the output shape comes from shape
    inference, so explicit pads, dilations and ``auto_pad=SAME_*`` are all exact.
    """

    op_types = ("Conv",)
    parameter_inputs = (1, 2)

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


@register
class ConvTransposeRule(OpRule):
    """ConvTranspose: weight ``[C_in, C_out/groups, k...]``.

    Every input element is multiplied into C_out/groups x prod(kernel) outputs, so
    MACs = input elements x C_out/groups x prod(kernel). Counting output elements x C_in x
    prod(kernel) instead, as most counters (and the RANP reference) do, overcounts by
    prod(stride). The ``ranp-paper`` convention keeps the reference's number.
    """

    op_types = ("ConvTranspose",)
    parameter_inputs = (1, 2)

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
