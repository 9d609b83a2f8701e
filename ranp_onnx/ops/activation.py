"""Activations and other elementwise unary functions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from .base import Autocast, AutogradMemory, OpCost, OpRule, TrainingContext, numel, register
from .coupling import broadcast_axis, pass_through
from .kernels.evaluation import optional, required, scalar

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext

#: A torch implementation of a unary op: (input, node) -> output.
UnaryFunction = Callable[["torch.Tensor", "NodeInfo"], "torch.Tensor"]


class _Unary(OpRule):
    """One FLOP per output element; ``paper_memory`` for activations torch has modules for."""

    paper_memory: bool = False
    #: Ops whose backward reads their output (``relu``, ``sigmoid``, ``exp``); the others
    #: read their input, and those in ``keeps_nothing`` read neither.
    keeps_output: ClassVar[frozenset[str]] = frozenset()
    keeps_nothing: ClassVar[frozenset[str]] = frozenset()

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """The output (``keeps_output``), nothing (``keeps_nothing``) or the input."""
        if node.op_type in self.keeps_nothing:
            return AutogradMemory()
        if node.op_type in self.keeps_output:
            return AutogradMemory(saved_outputs=(0,))
        return AutogradMemory(saved_inputs=(0,))

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Elementwise: channel c in, channel c out."""
        pass_through(node, graph, channels)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per element; the reference counter counts no FLOPs for activations."""
        return OpCost(flops=numel(graph.shape(node.outputs[0])), paper_memory=self.paper_memory)


@register
class ActivationRule(_Unary):
    """Activation layers (ReLU, ReLU6 exported as Clip, LeakyReLU, ...).

    The reference counter adds their outputs to its memory figure: they are ``nn.Module``
    calls in its models. A functional activation exports to the same ONNX node, so an
    ONNX graph cannot tell the two apart (see I3D in docs/results.md).
    """

    op_types: ClassVar[tuple[str, ...]] = (
        "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
        "Selu", "Celu", "Softplus", "Softsign", "Gelu", "Mish", "ThresholdedRelu",
    )  # fmt: skip
    paper_memory = True
    keeps_output = frozenset({"Relu", "Sigmoid", "Tanh"})

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """The matching ``torch.nn.functional`` activation (Clip reads its bounds)."""
        if node.op_type == "Clip":
            return [_clip(node, inputs, context.opset)]
        return [_activations()[node.op_type](required(inputs, 0), node)]


@register
class PReluRule(ActivationRule):
    """PRelu: its slope (input 1) is a learnable parameter, one per channel or shared."""

    op_types = ("PRelu",)
    parameter_inputs = (1,)
    autocast: ClassVar[Mapping[str, Autocast]] = {"cuda": "lower"}

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """Input and slope; torch's CPU backward holds an input-sized product on the way."""
        scratch = context.nbytes(graph, node.inputs[0]) if context.device == "cpu" else 0
        return AutogradMemory(saved_inputs=(0, 1), backward_scratch=scratch)

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Elementwise; a per-channel slope is sliced with the channels."""
        pass_through(node, graph, channels)
        x = node.inputs[0]
        if len(graph.shape(x)) < 2:
            return
        axis = broadcast_axis(graph.shape(node.inputs[1]), graph.shape(x), 1)
        if axis is not None:
            channels.tie(channels.space(node.inputs[1], axis), channels.space(x, 1))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``x`` where positive, ``slope * x`` elsewhere (slope broadcast to ``x``)."""
        import torch
        import torch.nn.functional as F

        x, slope = required(inputs, 0), required(inputs, 1)
        if x.dim() >= 2 and slope.dim() <= x.dim():
            aligned = (1,) * (x.dim() - slope.dim()) + tuple(slope.shape)
            per_channel = aligned == (1, x.shape[1]) + (1,) * (x.dim() - 2)
        else:
            per_channel = False
        if per_channel or (x.dim() >= 2 and slope.numel() == 1 and slope.dim() <= x.dim()):
            return [F.prelu(x, slope.reshape(-1))]
        return [torch.where(x >= 0, x, slope * x)]


@register
class MathRule(_Unary):
    """Elementwise math functions that are not layers of their own."""

    op_types = (
        "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Sin", "Cos", "Floor",
        "Ceil", "Round", "Sign", "Not", "IsNaN", "IsInf", "Tan", "Asin", "Acos", "Atan",
        "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
    )  # fmt: skip
    keeps_output = frozenset({"Exp", "Sqrt", "Reciprocal"})
    keeps_nothing = frozenset({"Neg", "Floor", "Ceil", "Round", "Sign", "Not", "IsNaN", "IsInf"})

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """The torch function of the same name."""
        return [_math()[node.op_type](required(inputs, 0), node)]


def _clip(node: NodeInfo, inputs: Sequence[torch.Tensor | None], opset: int) -> torch.Tensor:
    """Clip; ``hardtanh`` for floats, so the gradient matches ``nn.ReLU6`` at the bounds."""
    import torch
    import torch.nn.functional as F

    x = required(inputs, 0)
    if opset < 11:
        low, high = node.attribute("min"), node.attribute("max")
    else:
        low_tensor, high_tensor = optional(inputs, 1), optional(inputs, 2)
        low = None if low_tensor is None else scalar(low_tensor)
        high = None if high_tensor is None else scalar(high_tensor)
    if x.is_floating_point():
        low = float("-inf") if low is None else float(low)
        high = float("inf") if high is None else float(high)
        if low <= high:
            return F.hardtanh(x, low, high)
    return (
        torch.clamp(x, low, high)
        if low is None or high is None or low <= high
        else (torch.full_like(x, high))
    )


@functools.cache
def _activations() -> dict[str, UnaryFunction]:
    import torch
    import torch.nn.functional as F

    def alpha(node: NodeInfo, default: float) -> float:
        return float(node.attribute("alpha", default))

    def hard_sigmoid(x: torch.Tensor, node: NodeInfo) -> torch.Tensor:
        a, b = alpha(node, 0.2), float(node.attribute("beta", 0.5))
        if abs(a - 1 / 6) < 1e-7 and b == 0.5:
            return F.hardsigmoid(x)
        return torch.clamp(a * x + b, 0.0, 1.0)

    def selu(x: torch.Tensor, node: NodeInfo) -> torch.Tensor:
        a = alpha(node, 1.67326319217681884765625)
        gamma = float(node.attribute("gamma", 1.05070102214813232421875))
        return gamma * F.elu(x, a)

    return {
        "Relu": lambda x, node: F.relu(x),
        "LeakyRelu": lambda x, node: F.leaky_relu(x, alpha(node, 0.01)),
        "Sigmoid": lambda x, node: torch.sigmoid(x),
        "HardSigmoid": hard_sigmoid,
        "HardSwish": lambda x, node: F.hardswish(x),
        "Tanh": lambda x, node: torch.tanh(x),
        "Elu": lambda x, node: F.elu(x, alpha(node, 1.0)),
        "Selu": selu,
        "Celu": lambda x, node: F.celu(x, alpha(node, 1.0)),
        "Softplus": lambda x, node: F.softplus(x),
        "Softsign": lambda x, node: F.softsign(x),
        "Gelu": lambda x, node: F.gelu(x, approximate=str(node.attribute("approximate", "none"))),
        "Mish": lambda x, node: F.mish(x),
        "ThresholdedRelu": lambda x, node: torch.where(
            x > alpha(node, 1.0), x, torch.zeros_like(x)
        ),
    }


@functools.cache
def _math() -> dict[str, UnaryFunction]:
    import torch

    def is_inf(x: torch.Tensor, node: NodeInfo) -> torch.Tensor:
        positive = bool(node.attribute("detect_positive", 1))
        negative = bool(node.attribute("detect_negative", 1))
        if positive and negative:
            return torch.isinf(x)
        if positive:
            return torch.isposinf(x)
        return torch.isneginf(x) if negative else torch.zeros_like(x, dtype=torch.bool)

    functions: dict[str, UnaryFunction] = {"IsInf": is_inf}
    names: dict[str, Callable[..., torch.Tensor]] = {
        "Abs": torch.abs, "Neg": torch.neg, "Exp": torch.exp, "Log": torch.log,
        "Sqrt": torch.sqrt, "Reciprocal": torch.reciprocal, "Erf": torch.erf,
        "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin,
        "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh, "Cosh": torch.cosh,
        "Asinh": torch.asinh, "Acosh": torch.acosh, "Atanh": torch.atanh,
        "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "Sign": torch.sign,
        "Not": torch.logical_not, "IsNaN": torch.isnan,
    }  # fmt: skip
    for op_type, function in names.items():
        functions[op_type] = _ignoring_node(function)
    return functions


def _ignoring_node(function: Callable[..., torch.Tensor]) -> UnaryFunction:
    def apply(x: torch.Tensor, node: NodeInfo) -> torch.Tensor:
        return function(x)

    return apply
