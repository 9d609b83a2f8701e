"""Gemm and MatMul: fully connected layers (features on the last axis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

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
from .coupling import broadcast_axis
from .kernels.evaluation import optional, required

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext


class _Product(OpRule):
    """A matrix product: under autocast it runs in the lower precision."""

    autocast = EVERYWHERE

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """Each factor is kept if the other one's gradient is needed (the bias never is)."""
        a, b = node.inputs[0], node.inputs[1]
        saved = tuple(position for position, other in ((0, b), (1, a)) if context.needs_grad(other))
        return AutogradMemory(saved_inputs=saved)


@register
class GemmRule(_Product):
    """Gemm: ``Y = alpha * A' B' + beta * C`` with ``A'`` of shape [M, K], ``B'`` [K, N]."""

    op_types = ("Gemm",)
    parameter_inputs = (1, 2)

    masked_inputs = ((0, 1),)
    bias_input = 2
    initializer_roles: ClassVar[dict[int, str]] = {1: "weight", 2: "bias"}

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Output features are neurons; input features are tied to the weight's in-axis."""
        a, weight, y = node.inputs[0], node.inputs[1], node.outputs[0]
        if node.attribute("transA", 0) or not graph.tensors[weight].static:
            channels.block_node(node, "Gemm with a transposed input or a computed weight")
            return
        out_axis = 0 if node.attribute("transB", 0) else 1
        a_space, y_space = channels.space(a, 1), channels.space(y, 1)
        channels.member(node, a_space, y_space)
        channels.tie(channels.space(weight, 1 - out_axis), a_space)
        channels.tie(channels.space(weight, out_axis), y_space)
        if len(node.inputs) > 2 and node.inputs[2]:
            axis = broadcast_axis(graph.shape(node.inputs[2]), graph.shape(y), 1)
            if axis is not None:
                channels.tie(channels.space(node.inputs[2], axis), y_space)
        channels.add_layer(node, y_space, weight)

    def neuron_weights(self, node: NodeInfo, weight: np.ndarray) -> np.ndarray:
        """``[out_features, in_features]``."""
        return weight if node.attribute("transB", 0) else weight.T

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.linear`` for a Linear layer's form, else ``alpha * A' @ B' + beta * C``."""
        import torch
        import torch.nn.functional as F

        a, b, c = required(inputs, 0), required(inputs, 1), optional(inputs, 2)
        alpha = float(node.attribute("alpha", 1.0))
        beta = float(node.attribute("beta", 1.0))
        trans_a, trans_b = bool(node.attribute("transA", 0)), bool(node.attribute("transB", 0))
        linear_bias = c is None or tuple(c.shape) == (b.shape[0],)
        if trans_b and not trans_a and alpha == 1.0 and beta == 1.0 and linear_bias:
            return [F.linear(a, b, c)]
        y = torch.matmul(a.t() if trans_a else a, b.t() if trans_b else b)
        if alpha != 1.0:
            y = alpha * y
        if c is not None and beta != 0.0:
            y = y + (c if beta == 1.0 else beta * c)
        return [y]

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
class MatMulRule(_Product):
    """MatMul with numpy broadcasting: ``[..., M, K] @ [..., K, N]``.

    With a weight initializer it is a Linear layer, which the reference counter counts
    (2 x in x out per row, output memory); between two activations it counts nothing.
    """

    op_types = ("MatMul",)
    parameter_inputs = (0, 1)

    masked_inputs = ((0, -1),)
    initializer_roles: ClassVar[dict[int, str]] = {1: "weight"}

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """``[N, K] @ W[K, M]``: output features are neurons; other forms are kept whole."""
        a, weight, y = node.inputs[0], node.inputs[1], node.outputs[0]
        if (
            not graph.tensors[weight].static
            or len(graph.shape(a)) != 2
            or len(graph.shape(weight)) != 2
        ):
            channels.block_node(node, "MatMul other than [N, K] activations times a [K, M] weight")
            return
        a_space, y_space = channels.space(a, 1), channels.space(y, 1)
        channels.member(node, a_space, y_space)
        channels.tie(channels.space(weight, 0), a_space)
        channels.tie(channels.space(weight, 1), y_space)
        channels.add_layer(node, y_space, weight)

    def neuron_weights(self, node: NodeInfo, weight: np.ndarray) -> np.ndarray:
        """``[out_features, in_features]``."""
        return weight.T

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``torch.matmul`` (numpy semantics, as ONNX)."""
        import torch

        return [torch.matmul(required(inputs, 0), required(inputs, 1))]

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
        # A static operand (an initializer, or one read through Transpose / Identity as the
        # torchscript exporter writes nn.Linear) makes it a Linear layer.
        linear = any(graph.tensors[name].static for name in node.inputs[:2])
        return OpCost(
            macs=macs,
            flops=2 * macs,
            paper_flops=2 * macs if linear else 0,
            paper_memory=linear,
        )
