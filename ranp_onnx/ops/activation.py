"""Activations and other elementwise unary functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from .base import OpCost, OpRule, numel, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo


class _Unary(OpRule):
    """One FLOP per output element; ``paper_memory`` for activations torch has modules for."""

    paper_memory: bool = False

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per element; the reference counter counts no FLOPs for activations."""
        return OpCost(flops=numel(graph.shape(node.outputs[0])), paper_memory=self.paper_memory)


@register
class ActivationRule(_Unary):
    """Activation layers (ReLU, ReLU6 exported as Clip, LeakyReLU, ...).

    The reference counter adds their outputs to its memory figure: they are ``nn.Module``
    calls in its models. A functional activation exports to the same ONNX node, so an
    ONNX graph cannot tell the two apart (see I3D in the README).
    """

    op_types: ClassVar[tuple[str, ...]] = (
        "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
        "Selu", "Celu", "Softplus", "Softsign", "Gelu", "Mish", "ThresholdedRelu",
    )  # fmt: skip
    paper_memory = True


@register
class PReluRule(ActivationRule):
    """PRelu: its slope (input 1) is a learnable parameter, one per channel or shared."""

    op_types = ("PRelu",)
    parameter_inputs = (1,)


@register
class MathRule(_Unary):
    """Elementwise math functions that are not layers of their own."""

    op_types = (
        "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Sin", "Cos", "Floor",
        "Ceil", "Round", "Sign", "Not", "IsNaN", "IsInf",
    )  # fmt: skip
